"""Benchmark 1: framework overhead, Flower + Ray simulation vs a plain single-process PyTorch loop.

Command (results in simulations/benchmarks/results/overhead.md):

    python -m simulations.benchmarks.overhead [--sizes small large] [--reps 3] [--out runs/bench_overhead]

The same federated continual run (Split Fashion-MNIST, 5 tasks x 4 rounds = 20
rounds, MLP 784-256-256-10, FedAvg + naive fine-tuning, 1 local epoch, seed 0)
goes once through ``simulations.run`` (own SuperLink, ``flwr run``, Ray actors)
and once through :func:`simulations.benchmarks.plain_loop.plain_federation`
(same stream, seeds, trainer and averaging, no messages). Sizes: ``small`` =
10 clients all every round; ``large`` = 100 clients, 20 sampled per round.
Variants run interleaved (plain, flower, plain, flower, ...), each in a fresh
process (so neither one finds the data already loaded), and the table gives
medians. Checkpoints and plots are off in both (outputs, not computation).

Times per run: ``outer`` = from the launch of the process to ``summary.json``
(Flower: Python start, SuperLink, Ray start-up, ServerApp; plain: Python start,
imports); ``inner`` = the run's own ``wall_time_s`` (from loading the data to
the last evaluation); ``first round`` = from the launch to the first finished
round (its evaluation included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fedcl.config import compose, validate
from simulations.benchmarks.common import append_results, machine

SIZES = {
    "small": ["federation.num_clients=10"],
    "large": ["federation.num_clients=100", "federation.clients_per_round=20"],
}
BASE = ["federation.rounds_per_task=4", "device=cpu", "quiet=true", "output.plots=false", "checkpoint.enabled=false"]
METRICS = ("acc", "forgetting", "bwt", "min_acc", "wc_acc")
TOLERANCE = 1e-3  # absolute, on accuracy-type metrics in [0, 1] (float32 sums in reply order may differ)


class CpuSampler(threading.Thread):
    """Sums the user + system CPU seconds of a process and all its descendants, sampled every 0.5 s.

    ``getrusage(RUSAGE_CHILDREN)`` misses Ray's workers and daemons (not reaped through the launcher), so
    each descendant's own counters are read from ``/proc`` and its last value kept; processes living
    shorter than one interval are missed.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.last: dict[int, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        from simulations.benchmarks.scale import tree_cpu_seconds

        while not self.stop_event.is_set():
            self.last.update(tree_cpu_seconds(self.pid))
            self.stop_event.wait(0.5)

    @property
    def seconds(self) -> float:
        return sum(self.last.values())


def _run_sampled(cmd: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    """``subprocess.run`` with a :class:`CpuSampler` on the child; returns the result and its CPU seconds."""
    timeout = kwargs.pop("timeout", 3600)
    proc = subprocess.Popen(cmd, text=True, **kwargs)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate(timeout=timeout)
    sampler.stop_event.set()
    sampler.join()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), sampler.seconds


def load() -> str:
    """The 1/5/15-minute load averages (other jobs share this machine)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _watch_first_round(path: Path, stamps: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        if path.exists() and path.stat().st_size > 0:
            stamps["first_round"] = time.time()
            return
        time.sleep(0.05)


def run_flower(overrides: list[str], run_dir: Path, tree: Path) -> dict[str, Any]:
    """One Flower run in a fresh launcher process run from ``tree``; outer, inner and first-round seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    stamps: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_first_round, args=(run_dir / "metrics.jsonl", stamps, stop), daemon=True)
    # composed in the child, from the tree's own config
    code = "import sys; from fedcl.config import compose; from simulations.run import run; " \
           "run(compose(sys.argv[2:]), sys.argv[1])"
    t0 = time.time()
    watcher.start()
    _, cpu = _run_sampled([sys.executable, "-c", code, str(run_dir), *overrides], cwd=tree,
                          stdout=subprocess.DEVNULL)
    outer = time.time() - t0
    stop.set()
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"outer": outer, "cpu": cpu, "inner": float(summary["wall_time_s"]),
            "first_round": stamps.get("first_round", float("nan")) - t0, "summary": summary}


def run_plain(overrides: list[str], tree: Path) -> dict[str, Any]:
    """One plain-loop run in a fresh process run from ``tree``; outer, inner and first-round seconds."""
    t0 = time.time()
    # one torch thread, as each Flower actor has (Ray: OMP_NUM_THREADS = its 1 CPU); two threads on a busy
    # machine also burn CPU spin-waiting for each other
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out, cpu = _run_sampled([sys.executable, "-m", "simulations.benchmarks.overhead", "--plain-once", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tree, env=env)
    outer = time.time() - t0
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"outer": outer, "cpu": cpu, "inner": float(res["summary"]["wall_time_s"]),
            "first_round": res["first_round_at"] - t0, "summary": res["summary"], "threads": res["threads"]}


def _plain_once(overrides: list[str]) -> None:
    import torch

    from simulations.benchmarks.plain_loop import plain_federation

    stamps: dict[str, float] = {}

    def on_round(rnd: int) -> None:
        stamps.setdefault("first", time.time())

    summary = plain_federation(validate(compose(overrides)), on_round)
    keep = {k: summary[k] for k in (*METRICS, "wall_time_s", "accuracy_matrix")}
    print(json.dumps({"summary": keep, "first_round_at": stamps["first"], "threads": torch.get_num_threads()}))


def agree(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest absolute difference of the final metrics and accuracy-matrix entries."""
    diffs = [abs(float(a[m]) - float(b[m])) for m in METRICS if a.get(m) is not None and b.get(m) is not None]
    diffs += [abs(x - y) for ra, rb in zip(a.get("accuracy_matrix", []), b.get("accuracy_matrix", []), strict=True)
              for x, y in zip(ra, rb, strict=True)]
    return max(diffs)


def table(results: dict[str, dict[str, list[dict[str, Any]]]], trees: list[str]) -> list[str]:
    """Markdown rows: medians per size and variant (``<tree> plain|flower``), ratios, metric agreement."""
    lines = ["| size | variant | runs | outer s (median) | inner s (median) | first round s (median) | "
             "CPU s, all processes (median) | ACC | loads (1/5/15 min) per run |", "|---" * 9 + "|"]
    ratios = []
    for size, by_variant in results.items():
        med: dict[str, dict[str, float]] = {}
        for variant, runs in by_variant.items():
            if not runs:
                continue
            med[variant] = {k: statistics.median(r[k] for r in runs) for k in ("outer", "inner", "first_round", "cpu")}
            loads = "; ".join(r["load"] for r in runs)
            lines.append(f"| {size} | {variant} | {len(runs)} | {med[variant]['outer']:.1f} | "
                         f"{med[variant]['inner']:.1f} | {med[variant]['first_round']:.1f} | "
                         f"{med[variant]['cpu']:.1f} | "
                         f"{runs[0]['summary']['acc']:.4f} | {loads} |")
        for tree in trees:
            f, p = f"{tree} flower", f"{tree} plain"
            if f in med and p in med:
                pairs = zip(by_variant[f], by_variant[p], strict=False)
                diff = max(agree(a["summary"], b["summary"]) for a, b in pairs)
                ratios.append(
                    f"- {size}, {tree}: Flower/plain wall-time ratio outer "
                    f"{med[f]['outer'] / med[p]['outer']:.2f}, inner {med[f]['inner'] / med[p]['inner']:.2f}, "
                    f"CPU seconds {med[f]['cpu'] / med[p]['cpu']:.2f}; "
                    f"first round {med[f]['first_round']:.1f} s vs {med[p]['first_round']:.1f} s; largest metric "
                    f"difference {diff:.2e} (tolerance {TOLERANCE:g}: {'agree' if diff <= TOLERANCE else 'DISAGREE'})")
    return lines + [""] + ratios


def tabulate(path: Path) -> None:
    """Print the table of the runs recorded in ``runs.jsonl`` (accuracy matrices are not kept there)."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    trees: list[str] = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r["summary"] = {m: r.get(m) for m in METRICS}
        results.setdefault(r["size"], {}).setdefault(f"{r['tree']} {r['variant']}", []).append(r)
        if r["tree"] not in trees:
            trees.append(r["tree"])
    print("\n".join(table(results, trees)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--plain-once":
        _plain_once(sys.argv[2:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--tabulate":  # the table of an interrupted run's runs.jsonl
        tabulate(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["plain", "flower"], choices=["plain", "flower"])
    parser.add_argument("--trees", nargs="+", default=["current=."],
                        help="label=path of source trees to compare (e.g. before=/tmp/base after=.), interleaved")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_overhead"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/overhead.md"))
    parser.add_argument("--label", default="", help="heading of this measurement")
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every variant")
    args = parser.parse_args()
    trees = {k: Path(v).resolve() for k, v in (t.split("=", 1) for t in args.trees)}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for size in args.sizes:
        results[size] = {f"{t} {v}": [] for t in trees for v in args.variants}
        overrides = [*BASE, *SIZES[size], *args.overrides]
        for rep in range(args.reps):
            for tree, path in trees.items():  # interleaved: A B A B ...
                for variant in args.variants:
                    before = load()
                    if variant == "flower":
                        res = run_flower(overrides, (args.out / f"{size}-{tree}-flower-{rep}").resolve(), path)
                    else:
                        res = run_plain(overrides, path)
                    res["load"] = before
                    results[size][f"{tree} {variant}"].append(res)
                    args.out.mkdir(parents=True, exist_ok=True)
                    with open(args.out / "runs.jsonl", "a") as fh:  # survives an interrupted benchmark
                        keep = {k: v for k, v in res.items() if k != "summary"}
                        fh.write(json.dumps({"size": size, "tree": tree, "variant": variant, "rep": rep, **keep,
                                             **{m: res["summary"].get(m) for m in METRICS}}) + "\n")
                    print(f"[{size} {tree} {variant} rep {rep}] outer {res['outer']:.1f} s inner {res['inner']:.1f} s "
                          f"first round {res['first_round']:.1f} s CPU {res['cpu']:.1f} s "
                          f"ACC {res['summary']['acc']:.4f} load {before}",
                          flush=True)
    text = "\n".join([f"## {args.label or 'measurement'} ({time.strftime('%Y-%m-%d %H:%M')})", "",
                      f"Command: `python -m simulations.benchmarks.overhead {' '.join(sys.argv[1:])}`", "",
                      f"Machine: {machine()}", "", *table(results, list(trees)), ""])
    append_results(args.results, text)


if __name__ == "__main__":
    main()
