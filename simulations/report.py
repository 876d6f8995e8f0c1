"""Report over runs: ``python -m simulations.report <run or grid folder>``.

Finds every ``summary.json`` below the folder, groups runs by configuration (the
resolved config minus the keys in :data:`IGNORED`: seed, output folders, resume,
checkpoint / logging / backend settings and device, none of which changes the
result), and writes ``report.md`` and ``report.csv`` (one row per configuration:
the config keys that differ between configurations, the number of runs, and
mean and sample std over seeds of every metric in :data:`METRICS`) plus PNG plots
in ``report_plots/``. Folders with an ``error.txt`` and no summary are listed as
failed runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.config import flatten

METRICS = ("acc", "forgetting", "forgetting_max", "bwt", "fwt", "min_acc", "wc_acc", "wall_time_s", "bytes_up",
           "bytes_down")
IGNORED = ("seed", "output", "resume", "quiet", "checkpoint", "logging", "backend", "device")
PLOTS = "report_plots"


def config_key(cfg: dict[str, Any]) -> dict[str, Any]:
    """The flattened config that identifies a configuration (seed and output settings removed)."""
    flat = flatten(cfg)
    return {k: v for k, v in flat.items() if k.split(".", 1)[0] not in IGNORED}


def find_runs(root: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """Summaries (with ``_dir``) of every run below ``root``, and the folders of failed runs."""
    runs = []
    for path in sorted(root.rglob("summary.json")):
        if "checkpoints" in path.parts:
            continue
        s = json.loads(path.read_text())
        s["_dir"] = str(path.parent)
        runs.append(s)
    failed = sorted(p.parent for p in root.rglob("error.txt") if not (p.parent / "summary.json").exists())
    return runs, failed


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else float("nan"))


def group_runs(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Configurations (runs grouped by :func:`config_key`) and the config keys that differ between them."""
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        key = config_key(r.get("config") or {})
        ident = json.dumps(key, sort_keys=True, default=str)
        g = groups.setdefault(ident, {"config": key, "runs": []})
        g["runs"].append(r)
    configs = list(groups.values())
    all_keys = sorted({k for g in configs for k in g["config"]})
    differing = [k for k in all_keys
                 if len({json.dumps(g["config"].get(k), default=str) for g in configs}) > 1]
    differing = _drop_implied(differing, configs)
    for i, g in enumerate(configs):
        g["values"] = {k: g["config"].get(k) for k in differing}
        g["label"] = ", ".join(f"{k}={_fmt_value(v)}" for k, v in g["values"].items()) or "all runs"
        g["slug"] = f"c{i}-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", g["label"])[:60]
        g["seeds"] = sorted({(r.get("config") or {}).get("seed") for r in g["runs"]}, key=str)
        g["stats"] = {m: _mean_std([r.get(m) for r in g["runs"]]) for m in METRICS}
    configs.sort(key=lambda g: g["label"])
    return configs, differing


def _drop_implied(differing: list[str], configs: list[dict[str, Any]]) -> list[str]:
    """Drop ``group.key`` columns implied by ``group.name`` (``strategy=fot`` brings ``strategy.eps``).

    A key stays when it varies between configurations of the same group option,
    i.e. when the user swept it.
    """
    def ident(g: dict[str, Any], k: str) -> str:
        return json.dumps(g["config"].get(k), default=str)

    kept = []
    for k in differing:
        group, _, rest = k.partition(".")
        name_key = f"{group}.name"
        if rest and k != name_key and name_key in differing:
            by_name: dict[str, set[str]] = {}
            for g in configs:
                by_name.setdefault(ident(g, name_key), set()).add(ident(g, k))
            if all(len(v) == 1 for v in by_name.values()):
                continue
        kept.append(k)
    return kept


def _fmt_value(v: Any) -> str:
    return "-" if v is None else str(v)


def _fmt(m: str, mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    if m in ("bytes_up", "bytes_down"):
        s = f"{mean / 1e6:.2f}" + ("" if math.isnan(std) else f" ± {std / 1e6:.2f}")
        return s + " MB"
    if m == "wall_time_s":
        return f"{mean:.1f}" + ("" if math.isnan(std) else f" ± {std:.1f}") + " s"
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def _mean_matrix(runs: list[dict[str, Any]]) -> np.ndarray | None:
    mats = [np.asarray(r["accuracy_matrix"], dtype=float) for r in runs if r.get("accuracy_matrix")]
    if not mats or len({m.shape for m in mats}) != 1:
        return None
    return np.mean(mats, axis=0)


def _mean_round_acc(runs: list[dict[str, Any]]) -> tuple[np.ndarray, list[int]] | None:
    curves = []
    for r in runs:
        path = Path(r["_dir"]) / "metrics.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        matrix = r.get("accuracy_matrix") or []
        n_tasks = len(matrix[0]) if matrix else 1 + max(
            (int(t) for row in rows for t in row.get("acc_per_task", {})), default=0)
        acc = np.full((len(rows), n_tasks), np.nan)
        for i, row in enumerate(rows):
            for t, a in row.get("acc_per_task", {}).items():
                acc[i, int(t)] = a
        curves.append(acc)
    if not curves or len({c.shape for c in curves}) != 1:
        return None
    ends = [int(e) - 1 for e in runs[0].get("task_end_rounds", [])]
    with warnings.catch_warnings():
        # all-NaN cells (a task not begun yet) stay NaN: that is the intended value
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(curves), axis=0), ends


def _forgetting_per_task(A: np.ndarray) -> list[float]:
    T = A.shape[0] - 1
    return [float(A[j, j] - A[T, j]) for j in range(T)]


def write_plots(configs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per-configuration heatmaps and round curves, plus the comparisons across configurations."""
    from fedcl.metrics.plots import (
        plot_accuracy_matrix,
        plot_config_bars,
        plot_forgetting_by_config,
        plot_round_accuracy,
    )

    paths: list[Path] = []
    forget_labels, forget_vals = [], []
    for g in configs:
        n = len(g["runs"])
        A = _mean_matrix(g["runs"])
        if A is not None and A.size:
            paths.append(plot_accuracy_matrix(A, out / f"{g['slug']}_accuracy_matrix.png",
                                              title=f"{g['label']}\naccuracy matrix (%), mean of {n} run(s)"))
            if A.shape[0] > 1:
                forget_labels.append(g["label"])
                forget_vals.append(_forgetting_per_task(A))
        curve = _mean_round_acc(g["runs"])
        if curve is not None:
            paths.append(plot_round_accuracy(curve[0], curve[1], out / f"{g['slug']}_round_accuracy.png",
                                             title=f"{g['label']}\nper-round accuracy, mean of {n} run(s) "
                                                   "(dashed: task boundaries)"))
    labels = [g["label"] for g in configs]
    stats = {m: ([g["stats"][m][0] for g in configs], [g["stats"][m][1] for g in configs]) for m in METRICS}
    paths.append(plot_config_bars(labels, {"ACC": stats["acc"], "forgetting": stats["forgetting"]},
                                  out / "compare_acc_forgetting.png",
                                  title="ACC and forgetting per configuration (mean ± std over seeds)"))
    paths.append(plot_config_bars(labels, {"bytes up": stats["bytes_up"], "bytes down": stats["bytes_down"]},
                                  out / "compare_bytes.png", title="communication per run (mean ± std over seeds)",
                                  xlabel="MB", scale=1e-6))
    if forget_labels:
        paths.append(plot_forgetting_by_config(forget_labels, forget_vals, out / "forgetting_per_task.png"))
    return paths


def report(path: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``report.csv`` (and plots) for every run below ``path``; return the tables.

    Returns
    -------
    dict
        ``configs`` (label, differing values, runs, seeds, mean/std per metric),
        ``differing_keys``, ``failed`` (folders), ``report_md``, ``report_csv``, ``plots``.
    """
    root = Path(path).resolve()
    runs, failed = find_runs(root)
    if not runs and not failed:
        from fedcl.errors import DataError

        raise DataError(f"no summary.json or error.txt below {root}: not a run or grid folder")
    configs, differing = group_runs(runs)
    csv_path, md_path = root / "report.csv", root / "report.md"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*differing, "runs", "seeds", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")]])
        for g in configs:
            cells = []
            for m in METRICS:
                mean, std = g["stats"][m]
                cells += ["" if math.isnan(mean) else repr(mean), "" if math.isnan(std) else repr(std)]
            w.writerow([*(_fmt_value(g["values"][k]) for k in differing), len(g["runs"]),
                        " ".join(map(str, g["seeds"])), *cells])
    plot_paths = write_plots(configs, root / PLOTS) if plots and configs else []
    md_path.write_text(_markdown(root, configs, differing, failed, plot_paths))
    return {
        "configs": [{k: g[k] for k in ("label", "values", "seeds", "stats", "slug")} | {"runs": len(g["runs"])}
                    for g in configs],
        "differing_keys": differing,
        "failed": [str(p) for p in failed],
        "report_md": str(md_path),
        "report_csv": str(csv_path),
        "plots": [str(p) for p in plot_paths],
    }


def _markdown(root: Path, configs: list[dict[str, Any]], differing: list[str], failed: list[Path],
              plots: list[Path]) -> str:
    n_runs = sum(len(g["runs"]) for g in configs)
    lines = [f"# Report: {root}", "",
             f"{n_runs} run(s) in {len(configs)} configuration(s); mean ± sample std over seeds "
             "(accuracy metrics in percent).", ""]
    head = [*differing, "runs", *METRICS]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for g in configs:
        cells = [_fmt_value(g["values"][k]) for k in differing] + [str(len(g["runs"]))]
        cells += [_fmt(m, *g["stats"][m]) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", f"## Failed runs ({len(failed)})", ""]
        for d in failed:
            err = (d / "error.txt").read_text().strip().splitlines()
            lines.append(f"- `{d}`: {err[-1] if err else 'error.txt is empty'}")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(root)})" for p in plots]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m simulations.report <folder> [--no-plots]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run folder or a grid (multirun) folder")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    out = report(args.path, plots=not args.no_plots)
    print(Path(out["report_md"]).read_text())
    print(f"written: {out['report_md']}, {out['report_csv']}, {len(out['plots'])} plot(s)")


if __name__ == "__main__":
    main()
