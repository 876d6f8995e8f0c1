"""The yardstick (issue 23, item 4): fedcl against what a plain PyTorch loop gets from this machine.

Command (results in simulations/benchmarks/results/yardstick.md):

    python -m simulations.benchmarks.yardstick [--reps 3] [--workers N] [--variants ...] [overrides ...]

The workload (:data:`WORKLOAD`, any overrides appended): Permuted Fashion-MNIST, 5 tasks x
5 rounds, 10 clients all sampled every round, the MLP 784-400-400-400-10, lr 0.01, batch 64,
one local epoch, FedAvg, seed 0, no checkpoints or plots. Variants, each in a fresh process,
interleaved (one of each, then the next repetition), medians over the repetitions:

* ``plain-1``: :func:`~simulations.benchmarks.plain_loop.plain_federation`, one process, one
  torch thread (the reference for ``backend=inprocess``, which trains its clients one by one);
* ``plain-N``: the same loop with each round's clients trained in ``N`` single-threaded worker
  processes (:mod:`simulations.benchmarks.plain_parallel`); ``N`` defaults to the clients the
  Flower simulation trains at once (CPUs / ``backend.client_num_cpus``): the machine's limit,
  the reference for ``backend=local``;
* ``inprocess``: ``fedcl.run`` with ``backend=inprocess``;
* ``local``: ``fedcl.run`` with ``backend=local`` (Flower simulation: SuperLink, Ray, actors).

Per run: ``outer`` = launch of the process to its exit (imports, data, start-up, rounds,
outputs), ``first round`` = launch to the first finished round, CPU seconds of all the run's
processes. Ratios are of medians. Wall times on a shared machine are only comparable within one
interleaved run, and not even then under heavy load (a variant with more threads gets a larger share
of the CPU): the CPU-seconds ratio is printed beside them; the load averages before each run are
recorded. Targets: ``local`` <= 1.10 x ``plain-N`` and ``inprocess`` <= 1.05 x ``plain-1``, end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedcl.config import compose, validate
from simulations.benchmarks.common import append_results, machine
from simulations.benchmarks.overhead import _run_sampled, agree, load, run_flower

WORKLOAD = ["stream=permuted_fmnist", "stream.num_tasks=5", "federation.num_clients=10",
            "federation.rounds_per_task=5", "model.hidden=[400,400,400]", "train.lr=0.01", "train.batch_size=64",
            "train.local_epochs=1", "strategy=fedavg", "method=naive", "seed=0", "device=cpu", "quiet=true",
            "output.plots=false", "checkpoint.enabled=false"]
VARIANTS = ("plain-1", "plain-N", "inprocess", "local")
TARGETS = {"local": ("plain-N", 1.10), "inprocess": ("plain-1", 1.05)}


def default_workers(overrides: list[str]) -> int:
    """Clients the Flower simulation trains at once here: Ray's CPUs / ``backend.client_num_cpus``."""
    cfg = compose(overrides)
    return max(1, int((os.cpu_count() or 1) // cfg.backend.client_num_cpus))


def run_plain(overrides: list[str], workers: int) -> dict[str, Any]:
    """One plain-loop run (``workers`` = 0: one process) in a fresh single-threaded process."""
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "simulations.benchmarks.yardstick", "--plain-once", str(workers), *overrides]
    out, cpu = _run_sampled(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    outer = time.time() - t0
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"outer": outer, "cpu": cpu, "inner": float(res["summary"]["wall_time_s"]),
            "first_round": res["first_round_at"] - t0, "summary": res["summary"]}


def _plain_once(workers: int, overrides: list[str]) -> None:
    import torch

    from simulations.benchmarks.plain_loop import plain_federation
    from simulations.benchmarks.plain_parallel import parallel_federation

    torch.set_num_threads(1)
    stamps: dict[str, float] = {}

    def on_round(rnd: int) -> None:
        stamps.setdefault("first", time.time())

    cfg = validate(compose(overrides))
    summary = parallel_federation(cfg, workers, on_round) if workers else plain_federation(cfg, on_round)
    keep = {k: summary[k] for k in ("acc", "forgetting", "bwt", "min_acc", "wc_acc", "wall_time_s",
                                    "accuracy_matrix")}
    print(json.dumps({"summary": keep, "first_round_at": stamps["first"]}))


def run_variant(variant: str, overrides: list[str], workers: int, run_dir: Path) -> dict[str, Any]:
    if variant == "plain-1":
        return run_plain(overrides, 0)
    if variant == "plain-N":
        return run_plain(overrides, workers)
    return run_flower([*overrides, f"backend={variant}"], run_dir, Path.cwd())


def table(runs: list[dict[str, Any]], workers: int) -> list[str]:
    """Markdown: medians per variant, then the ratios against the targets and the metric agreement."""
    lines = ["| variant | runs | end to end s (median) | first round s | inner s | CPU s, all processes | ACC | "
             "loads (1/5/15 min) before each run |", "|---" * 8 + "|"]
    med: dict[str, dict[str, float]] = {}
    by: dict[str, list[dict[str, Any]]] = {}
    for v in VARIANTS:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        by[v] = rs
        med[v] = {k: statistics.median(r[k] for r in rs) for k in ("outer", "first_round", "inner", "cpu")}
        name = v.replace("N", str(workers))
        lines.append(f"| {name} | {len(rs)} | {med[v]['outer']:.1f} | {med[v]['first_round']:.1f} | "
                     f"{med[v]['inner']:.1f} | {med[v]['cpu']:.1f} | {rs[0]['summary']['acc']:.4f} | "
                     f"{'; '.join(r['load'] for r in rs)} |")
    lines.append("")
    for v, (ref, target) in TARGETS.items():
        if v in med and ref in med:
            ratio = med[v]["outer"] / med[ref]["outer"]
            diff = max(agree(a["summary"], b["summary"]) for a, b in zip(by[v], by[ref], strict=False))
            lines.append(f"- {v} / {ref.replace('N', str(workers))}: end to end {ratio:.2f} (target <= {target:.2f}: "
                         f"{'met' if ratio <= target else 'NOT met'}), inner "
                         f"{med[v]['inner'] / med[ref]['inner']:.2f}, CPU seconds "
                         f"{med[v]['cpu'] / med[ref]['cpu']:.2f}, first round {med[v]['first_round']:.1f} s vs "
                         f"{med[ref]['first_round']:.1f} s; largest metric difference {diff:.2e}")
    if "local" in med and "plain-1" in med:
        lines.append(f"- local / plain-1: end to end {med['local']['outer'] / med['plain-1']['outer']:.2f}")
    return lines


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--plain-once":
        _plain_once(int(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="plain-N's worker processes (0: as Flower's actors)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_yardstick"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/yardstick.md"))
    parser.add_argument("--label", default="")
    parser.add_argument("overrides", nargs="*", help="appended to the workload")
    args = parser.parse_args()
    overrides = [*WORKLOAD, *args.overrides]
    workers = args.workers or default_workers(overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for v in args.variants:  # interleaved
            before = load()
            r = run_variant(v, overrides, workers, (args.out / f"{v}-{rep}").resolve())
            r.update(variant=v, rep=rep, load=before)
            runs.append(r)
            with open(args.out / "runs.jsonl", "a") as fh:  # survives an interrupted benchmark
                fh.write(json.dumps({k: x for k, x in r.items() if k != "summary"} | {"acc": r["summary"]["acc"]})
                         + "\n")
            print(f"[{v} rep {rep}] end to end {r['outer']:.1f} s, first round {r['first_round']:.1f} s, "
                  f"inner {r['inner']:.1f} s, CPU {r['cpu']:.1f} s, load {before}", flush=True)
    text = "\n".join([f"## {args.label or 'yardstick'} ({time.strftime('%Y-%m-%d %H:%M')} UTC)", "",
                      f"Command: `python -m simulations.benchmarks.yardstick {' '.join(sys.argv[1:])}`", "",
                      f"Machine: {machine()}", "", *table(runs, workers), ""])
    append_results(args.results, text)


if __name__ == "__main__":
    main()
