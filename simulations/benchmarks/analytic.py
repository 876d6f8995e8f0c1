"""``strategy=analytic`` beside FedAvg, FOT and the best local method; its bytes, unlearning and DP costs.

Command (results in simulations/benchmarks/results/analytic.md; every part resumable, ``--table`` only
tabulates what has finished):

    nice -n 15 python -m simulations.benchmarks.analytic --part compare [--seeds 0 1 2] [--out runs/bench_analytic]
    nice -n 15 python -m simulations.benchmarks.analytic --part expansion
    nice -n 15 python -m simulations.benchmarks.analytic --part unlearning
    nice -n 15 python -m simulations.benchmarks.analytic --part dp
    python -m simulations.benchmarks.analytic --table

Protocol (the method zoo's, ``results/method_zoo.md``): 10 clients, all every round, Dirichlet(0.5)
label split per task, 5 tasks, 2 rounds per task, 1 local epoch, MLP 784-256-256, SGD lr 0.05 batch 64,
per-round eval subset 200, accuracy matrix on the full test split at each task end; ``backend=inprocess``.
``strategy=analytic`` trains the backbone by FedAvg in the 2 rounds of task 0, then d_e = 2048, gamma = 1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcl.config import compose
from simulations.benchmarks.common import machine, mean_std, slug
from simulations.run import run
from strategies.analytic import reply_bytes

RESULTS = Path(__file__).parent / "results" / "analytic.md"
BASE = ["backend=inprocess", "federation.num_clients=10", "federation.rounds_per_task=2", "stream.num_tasks=5",
        "stream.partition=dirichlet", "stream.alpha=0.5", "train.local_epochs=1", "eval.subset_size=200",
        "output.plots=false", "checkpoint.enabled=false", "device=cpu"]
STREAMS = {"split": ["stream=split_fmnist"], "permuted": ["stream=permuted_fmnist"]}
COMPARE = {
    "fedavg (naive)": ["strategy=fedavg"],
    "fot": ["strategy=fot"],
    "derpp (best local method of the zoo)": ["method=derpp"],
    "analytic": ["strategy=analytic"],
    "analytic, random frozen backbone (base_rounds=0)": ["strategy=analytic", "strategy.base_rounds=0"],
}
EXPANSION = [256, 512, 1024, 2048, 4096]
# unlearning: a class that only later tasks hold (the backbone never saw it) and a client that trained it
UNLEARN = {"class 4 (task 2)": "[{round:10,kind:class,target:4}]", "client 3": "[{round:10,kind:client,target:3}]"}
DP_NOISE = [1.0, 4.0, 16.0]
DP = ["strategy=analytic", "strategy.base_rounds=0", "privacy=dp_central", "strategy.feature_bound=1.0",
      "strategy.expansion_dim=1024", "strategy.dp_unit=sample"]


def one(out: Path, overrides: list[str], seed: int, table_only: bool) -> dict[str, Any] | None:
    """The summary of one run (cached: a folder with ``summary.json`` is reused)."""
    path = out / "summary.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    if table_only:
        return None
    t0 = time.perf_counter()
    summary = run(compose([*BASE, *overrides, f"seed={seed}", "quiet=true"]), out)
    print(f"[{out}] ACC {summary['acc']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return summary


def oracle_root(root: Path, what: str) -> Path:
    """The folder of the ``unlearning=retrain`` row of request ``what`` (the oracle of the other rows)."""
    return root / slug(f"{what} | retrain")


def part_runs(part: str, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every run of one part, by row name (seeds outermost, so an interrupted part is balanced)."""
    root = args.out.resolve() / part
    grid: dict[str, tuple[list[str], list[int]]] = {}
    if part == "compare":
        for s, so in STREAMS.items():
            grid |= {f"{s} | {name}": ([*so, *o], args.seeds) for name, o in COMPARE.items()}
    elif part == "expansion":
        grid = {f"d_e={d}": (["strategy=analytic", f"strategy.expansion_dim={d}"], args.seeds) for d in EXPANSION}
    elif part == "unlearning":
        for what, req in UNLEARN.items():
            for method in ("retrain", "analytic", "analytic woodbury"):
                o = ["strategy=analytic", f"unlearning={method.split()[0]}", f"unlearning.requests={req}"]
                if method.endswith("woodbury"):
                    o.append("unlearning.form=woodbury")
                if method != "retrain":
                    o.append(f"unlearning.oracle_dir={oracle_root(root, what)}/seed{{seed}}")
                grid[f"{what} | {method}"] = (o, args.seeds)
    else:
        grid = {f"z={z}": ([*DP, f"privacy.dp.noise_multiplier={z}", f"strategy.gamma={_dp_gamma(z)}"], args.seeds)
                for z in DP_NOISE}
        grid["no DP"] = (["strategy=analytic", "strategy.base_rounds=0", "strategy.feature_bound=1.0",
                          "strategy.expansion_dim=1024", f"strategy.gamma={_dp_gamma(0.0)}"], args.seeds)
    if args.only:  # a subset of the rows (e.g. extra seeds for the main comparison only)
        grid = {k: v for k, v in grid.items() if k.split(" | ")[-1] in args.only}
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in grid}
    for seed in args.seeds:
        for name, (overrides, seeds) in grid.items():
            if seed not in seeds:
                continue
            o = [x.replace("{seed}", str(seed)) for x in overrides]
            got = one(root / slug(name) / f"seed{seed}", o, seed, args.table)
            if got is not None:
                results[name].append(got)
    return results


def _dp_gamma(z: float) -> float:
    """gamma for the DP runs: above the spectral norm of the summed noise (about 2 sigma sqrt(d) sqrt(releases))."""
    sigma = z * (2.0**0.5)  # sample-level joint sensitivity sqrt(B^4 + B^2) at B = 1
    return float(max(1.0, round(2 * sigma * 1024**0.5 * 5**0.5)))


# ---- tables ------------------------------------------------------------------------------------------
def _pct(runs: list[dict[str, Any]], key: str) -> str:
    vals = [r[key] for r in runs if r.get(key) is not None]
    if len(vals) == 1:  # one seed: no spread to report
        return f"{vals[0] * 100:.2f}"
    return mean_std(vals) if vals else "-"


def table_compare(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| stream | configuration | seeds | ACC | forgetting | BWT | min-ACC | wall time (s) | MB up / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if not runs:
            continue
        stream, config = name.split(" | ")
        wall = np.mean([r["wall_time_s"] for r in runs])
        up = np.mean([r["bytes_up"] for r in runs]) / 1e6
        lines.append(f"| {stream} | {config} | {len(runs)} | {_pct(runs, 'acc')} | {_pct(runs, 'forgetting')} | "
                     f"{_pct(runs, 'bwt')} | {_pct(runs, 'min_acc')} | {wall:.0f} | {up:.0f} |")
    return "\n".join(lines)


def table_expansion(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| d_e | seeds | ACC | forgetting | bytes / reply (arrays) | MB up / statistics round | solve s (run) "
             "| wall time (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if not runs:
            continue
        d = int(name.split("=")[1])
        st = [r["strategy_state"] for r in runs]
        per_round = np.mean([s["stats_bytes"] / max(s["statistics_rounds"], 1) for s in st]) / 1e6
        solve = np.mean([s["solve_seconds"] for s in st])
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(f"| {d} | {len(runs)} | {_pct(runs, 'acc')} | {_pct(runs, 'forgetting')} | "
                     f"{reply_bytes(d, 10):,} | {per_round:.1f} | {solve:.2f} | {wall:.0f} |")
    return "\n".join(lines)


def _head_gap(run_dir: Path, oracle_dir: Path, rnd: int) -> float | None:
    """Relative Frobenius gap of the unlearned head to the retrain oracle's (request at the last round)."""
    final, oracle = run_dir / "final.pt", oracle_dir / "unlearning" / f"oracle-round-{rnd}.pt"
    if not final.exists() or not oracle.exists():
        return None
    w = torch.load(final, map_location="cpu", weights_only=False)["arrays"]["head.weight"]
    o = torch.load(oracle, map_location="cpu", weights_only=False)["state"]["head.weight"]
    return float(torch.linalg.norm(w - o) / torch.linalg.norm(o))


def table_unlearning(results: dict[str, list[dict[str, Any]]], root: Path) -> str:
    lines = ["| request | method | seeds | rounds | seconds | test ACC after | gap test ACC to oracle | "
             "KL(oracle, method) | W gap to oracle | exact (summary) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if not runs:
            continue
        what, method = name.split(" | ")
        jobs = [r["unlearning"]["jobs"][0] for r in runs]
        rounds = np.mean([j["rounds"] for j in jobs])
        secs = np.mean([j["seconds"] for j in jobs])
        acc = mean_std([j["after"]["test_acc"] for j in jobs])
        gaps = [j["oracle"]["gap_after"] for j in jobs if "oracle" in j]
        gap_acc = f"{np.mean([g['test_acc'] for g in gaps]) * 100:+.3f}" if gaps else "-"
        kl = f"{np.mean([g['test_kl'] for g in gaps]):.2e}" if gaps else "-"
        wg = [_head_gap(root / slug(name) / f"seed{r['config']['seed']}",
                        oracle_root(root, what) / f"seed{r['config']['seed']}", 10) for r in runs]
        wgap = f"{max(g for g in wg if g is not None):.1e}" if method != "retrain" and any(
            g is not None for g in wg) else "-"
        exact = {str(e.get("exact")) for r in runs for e in r["unlearning"]["method_state"].get("analytic", [])}
        lines.append(f"| {what} | {method} | {len(runs)} | {rounds:.0f} | {secs:.2f} | {acc} | {gap_acc} | {kl} | "
                     f"{wgap} | {', '.join(sorted(exact)) or '-'} |")
    return "\n".join(lines)


def table_dp(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| noise multiplier z | gamma | seeds | epsilon (delta 1e-5) | ACC | forgetting |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if not runs:
            continue
        z = 0.0 if name == "no DP" else float(name.split("=")[1])
        eps = np.mean([r.get("privacy", {}).get("epsilon", float("inf")) for r in runs]) if z else float("inf")
        lines.append(f"| {name} | {_dp_gamma(z):.0f} | {len(runs)} | {eps:.2f} | {_pct(runs, 'acc')} | "
                     f"{_pct(runs, 'forgetting')} |")
    return "\n".join(lines)


def write_tables(args: argparse.Namespace) -> str:
    args.table, args.only = True, None
    root = args.out.resolve()
    parts = [f"Machine: {machine()}; tables written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    parts += ["## ACC, forgetting, wall time", "", table_compare(part_runs("compare", args)), ""]
    parts += ["## Expansion size: accuracy vs bytes (Split Fashion-MNIST)", "",
              table_expansion(part_runs("expansion", args)), ""]
    parts += ["## Unlearning cost and exactness (Split Fashion-MNIST, request at the last round, 10)", "",
              table_unlearning(part_runs("unlearning", args), root / "unlearning"), ""]
    parts += ["## Central DP: ACC vs epsilon (Split Fashion-MNIST, random frozen backbone, d_e = 1024, B = 1)", "",
              table_dp(part_runs("dp", args)), ""]
    return "\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["compare", "expansion", "unlearning", "dp"], default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/bench_analytic"))
    p.add_argument("--table", action="store_true", help="tabulate finished runs (start none)")
    p.add_argument("--only", nargs="+", default=None, help="run only these rows (configuration names)")
    args = p.parse_args()
    if args.part is not None and not args.table:
        part_runs(args.part, args)
    print(write_tables(args))


if __name__ == "__main__":
    main()
