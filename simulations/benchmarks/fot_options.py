"""FOT's official-code choices, one at a time and together, on the small protocol (``experiment=fot_pmnist_small``).

``python -m simulations.benchmarks.fot_options --variants fot official fedavg --seeds 0 --workers 2``
runs each (variant, seed) as its own ``simulations.run`` process (``backend=inprocess``; a killed
run resumes from its checkpoint on the next call, a finished one is reused), ``--table`` writes
``simulations/benchmarks/results/fot_options.md`` from whatever has finished. Every variant
is a list of overrides on top of the small protocol; ``official`` is every choice of the
authors' code at once (Bakman et al., ICLR 2024; github.com/duygunuryldz/Federated_Orthogonal_Training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

BASE = ["experiment=fot_pmnist_small", "backend=inprocess", "quiet=true"]
ALL_SAMPLES = "strategy.gpse_max_samples=6000"  # the small protocol's clients hold 6,000 samples per task
OFFICIAL = ["strategy.gpse_model=local", "strategy.gpse_dropout=true", "strategy.min_new_directions=1",
            "model.dropout=[0.2,0.5,0.5]", ALL_SAMPLES]
NON_IID = ["stream.partition=shards", "stream.shards_per_client=2"]
FEDAVG = ["strategy=fedavg"]
VARIANTS: dict[str, list[str]] = {
    "fedavg": FEDAVG,
    "fedavg dropout list": [*FEDAVG, "model.dropout=[0.2,0.5,0.5]"],
    "fot": [],
    "fot eps 0.94": ["strategy.eps=0.94"],
    "fot gpse local": ["strategy.gpse_model=local"],
    "fot gpse dropout": ["strategy.gpse_dropout=true"],
    "fot min 1 direction": ["strategy.min_new_directions=1"],
    "fot dropout list": ["model.dropout=[0.2,0.5,0.5]"],
    "fot all samples": [ALL_SAMPLES],
    "fot sketch 2d": ["strategy.sketch_factor=2"],
    "official": OFFICIAL,
    "official eps 0.94": [*OFFICIAL, "strategy.eps=0.94"],
    "fedavg non-iid": [*FEDAVG, *NON_IID],
    "fot non-iid eps 0.94": [*NON_IID, "strategy.eps=0.94"],
    "fot non-iid eps 0.96": [*NON_IID, "strategy.eps=0.96"],
}
RESULTS = Path(__file__).parent / "results" / "fot_options.md"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_one(out: Path, name: str, seed: int) -> Path:
    """One (variant, seed): a fresh run, a resume of a killed one, or nothing when it has finished."""
    run_dir = out / slug(name) / f"seed{seed}"
    if (run_dir / "summary.json").exists():
        return run_dir
    if (run_dir / "checkpoints").exists():
        cmd = [sys.executable, "-m", "simulations.run", f"resume={run_dir}"]
    else:
        cmd = [sys.executable, "-m", "simulations.run", *BASE, *VARIANTS[name], f"seed={seed}",
               f"output.dir={run_dir}"]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / f"{slug(name)}_seed{seed}.log", "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"[{name} seed {seed}] rc={rc} after {time.time() - t0:.0f} s", flush=True)
    return run_dir


def summaries(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Finished runs per variant (seed order)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in VARIANTS:
        for path in sorted((out / slug(name)).glob("seed*/summary.json")):
            found.setdefault(name, []).append(json.loads(path.read_text()))
    return found


def _pct(values: list[float]) -> str:
    arr = 100 * np.asarray(values, dtype=float)
    return f"{arr.mean():.2f}" + (f" ± {arr.std(ddof=1):.2f}" if arr.size > 1 else "")


def _occupancy(s: dict[str, Any]) -> str:
    final = ((s.get("subspace") or {}).get("fot") or {}).get("final") or {}
    return ", ".join(f"{int(o['dim'])}/{int(o['input_dim'])}" for o in final.values()) or "-"


def table(out: Path) -> str:
    """Markdown: one row per variant (mean ± std over the finished seeds) and one per run."""
    found = summaries(out)
    head = "| variant | overrides | seeds | ACC | forgetting | BWT | min-ACC | wall s |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name, runs in found.items():
        seeds = ",".join(str(r["config"]["seed"]) for r in runs)
        cells = [_pct([r[m] for r in runs]) for m in ("acc", "forgetting", "bwt", "min_acc")]
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(f"| {name} | `{' '.join(VARIANTS[name]) or '(small protocol)'}` | {seeds} | "
                     + " | ".join(cells) + f" | {wall:.0f} |")
    lines += ["", "Per run: final basis dimension / input dimension per layer (FOT runs), current-task accuracy at "
              "each task's end (A[j, j], %).", "", "| variant | seed | ACC | forgetting | bases | A[j,j] |",
              "|---|---|---|---|---|---|"]
    for name, runs in found.items():
        for r in runs:
            diag = " ".join(f"{100 * r['accuracy_matrix'][j][j]:.1f}" for j in range(len(r["accuracy_matrix"])))
            lines.append(f"| {name} | {r['config']['seed']} | {100 * r['acc']:.2f} | {100 * r['forgetting']:.2f} "
                         f"| {_occupancy(r)} | {diag} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/fot_options"))
    parser.add_argument("--table", action="store_true", help="only print the table of the finished runs")
    args = parser.parse_args(argv)
    if not args.table:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # several runs share the cores: one torch thread each
        jobs = [(name, seed) for seed in args.seeds for name in args.variants]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(lambda job: run_one(args.out, *job), jobs))
    print(table(args.out))


if __name__ == "__main__":
    main()
