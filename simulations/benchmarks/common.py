"""Run a set of configurations x seeds through real Flower simulation and tabulate mean +- std."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.config import compose
from simulations.run import run

METRICS = ("acc", "forgetting", "bwt", "min_acc", "wc_acc")


def run_variants(
    out_dir: Path, base: list[str], variants: dict[str, list[str]], seeds: list[int], cached_only: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Run every variant with every seed (a run whose ``summary.json`` exists is reused).

    ``cached_only`` starts nothing: only finished runs are returned (a table of what exists). Each summary
    gets ``run_dir``, its run folder (tables read the runs' ``metrics.jsonl`` from there).
    """
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    # seeds outermost: an interrupted benchmark has every variant at the same number of seeds
    for seed in seeds:
        for name, overrides in variants.items():
            run_dir = out_dir / slug(name) / f"seed{seed}"
            summary_path = run_dir / "summary.json"
            if summary_path.exists():
                summary = json.loads(summary_path.read_text())
            elif cached_only:
                continue
            else:
                t0 = time.perf_counter()
                summary = run(compose([*base, *overrides, f"seed={seed}", "quiet=true"]), run_dir)
                print(f"[{name} seed {seed}] ACC {summary['acc']:.4f} forgetting {summary['forgetting']:.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            summary["run_dir"] = str(run_dir)
            results[name].append(summary)
    return results


def slug(name: str) -> str:
    """A folder name without spaces or brackets (run folders travel through ``flwr run -c``)."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def mean_std(values: list[float]) -> str:
    """``mean +- std`` in percent (std over seeds, ddof=1 when more than one)."""
    arr = np.asarray(values, dtype=float) * 100
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{arr.mean():.2f} ± {std:.2f}"


def machine() -> str:
    """One line describing this machine."""
    import os

    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"Python {platform.python_version()}"


def append_results(path: Path, text: str) -> None:
    """Print a measurement and append it to its results file (earlier measurements stay)."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(text + "\n")


def write_table(
    path: Path,
    title: str,
    command: str,
    results: dict[str, list[dict[str, Any]]],
    extra_columns: dict[str, Any] | None = None,
    notes: str = "",
) -> str:
    """A Markdown results table (mean ± std over seeds, percent) with the command that produced it."""
    cols = list(METRICS) + list((extra_columns or {}).keys())
    lines = [f"# {title}", "", f"Command: `{command}`", "", f"Machine: {machine()}", ""]
    lines.append("| configuration | seeds | " + " | ".join(cols) + " | wall time (s) |")
    lines.append("|---" * (len(cols) + 3) + "|")
    for name, runs in results.items():
        cells = [mean_std([r[m] for r in runs if r.get(m) is not None]) for m in METRICS]
        for fn in (extra_columns or {}).values():
            cells.append(fn(runs))
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {wall:.0f} |")
    text = "\n".join(lines) + "\n\n" + notes.strip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
