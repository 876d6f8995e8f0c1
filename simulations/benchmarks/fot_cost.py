"""Benchmark 2: what FOT's subspace machinery costs, from FOT's own counters.

Command (results in simulations/benchmarks/results/fot_cost.md):

    python -m simulations.benchmarks.fot_cost RUN_DIR [RUN_DIR ...]      # existing FOT runs
    python -m simulations.benchmarks.fot_cost --run [overrides ...]       # one new FOT run

FOT (Bakman et al., "Federated Orthogonal Training", ICLR 2024) adds, per task,
one GPSE round (clients' randomised sketches of their layer inputs, the server's
SVD and basis growth) and a projection of every round's aggregated update.
``strategies/fot.py`` counts ``gpse_seconds`` (the whole GPSE query: clients'
sketches as seen by the server, plus the server's SVD), ``projection_seconds``
and ``sketch_bytes``; the run summary keeps them in ``strategy_state``. The
targets: GPSE plus projection under 5% of the run's wall time, sketch bytes
under 5% of the model bytes sent up in the same run (``bytes_up`` minus the sketches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from simulations.benchmarks.common import append_results, machine


def row(summary: dict[str, Any], name: str) -> str:
    st = summary.get("strategy_state", {})
    wall = float(summary["wall_time_s"])
    gpse, proj, sketch = float(st.get("gpse_seconds", 0.0)), float(st.get("projection_seconds", 0.0)), \
        int(st.get("sketch_bytes", 0))
    # bytes_up counts the sketches too (strategies/fot.py adds them): the model's share is the rest
    up = max(int(summary.get("bytes_up", 0)) - sketch, 1)
    tasks = max(len(summary.get("accuracy_matrix", [])), 1)
    return (f"| {name} | {wall:.1f} | {gpse:.2f} ({100 * gpse / wall:.2f}%) | {proj:.2f} ({100 * proj / wall:.2f}%) | "
            f"{100 * (gpse + proj) / wall:.2f}% | {sketch / tasks / 1e6:.3f} | {up / tasks / 1e6:.2f} | "
            f"{100 * sketch / up:.3f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run one FOT experiment first (overrides follow)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_fot_cost"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/fot_cost.md"))
    parser.add_argument("items", nargs="*", help="run folders, or overrides with --run")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    dirs = [Path(p) for p in args.items]
    if args.run:
        from fedcl.config import compose
        from simulations.run import run

        overrides = ["strategy=fot", "quiet=true", "output.plots=false", *args.items]
        run(compose(overrides), args.out.resolve())
        dirs = [args.out]
    lines = [f"## FOT cost ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"Command: `python -m simulations.benchmarks.fot_cost {' '.join(sys.argv[1:])}`", "",
             f"Machine: {machine()}; load (1/5/15 min) at start {load}", "",
             "| run | wall s | GPSE s (share) | projection s (share) | FOT time share | sketch MB / task | "
             "model MB up / task | sketch / model bytes |", "|---" * 8 + "|"]
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        lines.append(row(summary, f"{d.name} ({summary['config']['stream']['num_tasks']} tasks, "
                                  f"{summary['config']['federation']['num_clients']} clients)"))
    text = "\n".join(lines) + "\n"
    append_results(args.results, text)


if __name__ == "__main__":
    main()
