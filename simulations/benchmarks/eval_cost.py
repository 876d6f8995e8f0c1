"""Benchmark 4: share of the run spent in the server's central evaluation.

Command (results in simulations/benchmarks/results/eval_cost.md):

    python -m simulations.benchmarks.eval_cost [overrides ...] [--label after]

Runs the experiment in this process (production strategy, ClientApp handlers and
``CentralEvaluator``; ``backend=inprocess``) and times every call of
``CentralEvaluator._eval``: the per-round evaluation of all seen tasks on their
cached fixed subsets (``eval.subset_size``, batched by ``eval.batch_size``) and the
full test split of every task at each task end. Run it from a source tree to
measure that tree (``cd <tree> && python -m simulations.benchmarks.eval_cost``).
The same evaluation runs on the ServerApp of a Flower run, so its seconds over a
Flower run's ``wall_time_s`` give the share there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from fedcl.config import compose
from simulations.benchmarks.common import append_results, machine
from simulations.run import run


def measure(overrides: list[str], out: Path) -> dict[str, Any]:
    """Run in-process; return wall seconds, evaluation seconds and calls (per-round and task-end)."""
    from strategies.server.evaluator import CentralEvaluator

    spent = {"per_round": 0.0, "full": 0.0, "calls": 0}
    orig_per_round, orig_full = CentralEvaluator.per_round, CentralEvaluator.full

    def per_round(self: Any, tasks: list[int]) -> Any:
        t0 = time.perf_counter()
        try:
            return orig_per_round(self, tasks)
        finally:
            spent["per_round"] += time.perf_counter() - t0
            spent["calls"] += 1

    def full(self: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig_full(self)
        finally:
            spent["full"] += time.perf_counter() - t0

    CentralEvaluator.per_round, CentralEvaluator.full = per_round, full  # type: ignore[method-assign]
    cfg = compose([*overrides, "backend=inprocess", "quiet=true", "output.plots=false", "checkpoint.enabled=false"])
    t0 = time.perf_counter()
    summary = run(cfg, out)
    wall = time.perf_counter() - t0
    return {"wall": wall, **spent, "acc": summary["acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_eval_cost"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/eval_cost.md"))
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    r = measure(args.overrides, args.out)
    ev = r["per_round"] + r["full"]
    text = (
        f"## {args.label or 'measurement'} ({time.strftime('%Y-%m-%d %H:%M')}, tree {Path.cwd()})\n\n"
        f"Command: `python -m simulations.benchmarks.eval_cost {' '.join(sys.argv[1:])}`\n\n"
        f"Machine: {machine()}; load (1/5/15 min) at start {load}, at end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n\n"
        f"| run wall s | evaluation s | share | per-round subsets s ({r['calls']} rounds) | "
        f"task-end full splits s | ACC |\n"
        f"|---:|---:|---:|---:|---:|---:|\n"
        f"| {r['wall']:.1f} | {ev:.2f} | {100 * ev / r['wall']:.1f}% | {r['per_round']:.2f} | {r['full']:.2f} | "
        f"{r['acc']:.4f} |\n"
    )
    append_results(args.results, text)


if __name__ == "__main__":
    main()
