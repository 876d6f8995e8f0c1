"""FedAvg x every local continual-learning method (and joint) on Split and Permuted Fashion-MNIST.

Command (results in simulations/benchmarks/results/method_zoo.md):

    nice -n 15 python -m simulations.benchmarks.method_zoo [--seeds 0 1 2] [--methods naive ewc derpp+fpf ...]
        [--streams split permuted] [--rounds-per-task 2] [--eval-subset 200] [--hidden 256 256]
        [--out runs/bench_zoo]

Protocol (issue 4): FedAvg, 10 clients all sampled every round, Dirichlet(0.5) label
split per task, 5 tasks; Split Fashion-MNIST is class-incremental (2 classes per task,
one shared head), Permuted Fashion-MNIST domain-incremental (task 0 unpermuted). Every
method runs with the parameters of its YAML in ``simulations/conf/method/``; a name
``a+b`` is the composition ``method=[a,b]`` (both YAMLs); ``joint`` (training on the
union of every task seen so far) is the upper bound. Runs use ``backend=inprocess``. The
protocol size (rounds per task, local epochs, evaluation subset, clients) is set by flags
so the zoo fits a small machine.

Resumable: a run folder with a ``summary.json`` is reused, so re-running with more
seeds or methods only runs what is missing. A run that fails leaves ``error.txt`` in
its folder and is left out of the table (listed under it) instead of stopping the zoo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.config import group_options
from simulations.benchmarks.common import mean_std, run_variants, slug, write_table

STREAMS: dict[str, tuple[str, list[str]]] = {
    "split": ("Split Fashion-MNIST (class-incremental)", ["stream=split_fmnist"]),
    "permuted": ("Permuted Fashion-MNIST (domain-incremental)", ["stream=permuted_fmnist"]),
}
RESULTS = Path(__file__).parent / "results" / "method_zoo.md"


# compositions worth a row: FPF as a plugin on the two replay methods it is meant to improve
COMPOSITIONS = ["er+fpf", "derpp+fpf"]


def zoo_methods() -> list[str]:
    """``joint`` (upper bound) first, ``naive`` (lower bound), every other option of the ``method`` group,
    then the compositions."""
    rest = [m for m in group_options("method") if m not in ("naive", "joint")]
    return ["joint", "naive", *rest, *COMPOSITIONS]


def method_overrides(name: str) -> list[str]:
    """``er`` -> ``method=er``; ``derpp+fpf`` -> ``method=[derpp,fpf]``."""
    parts = name.split("+")
    return [f"method={parts[0]}"] if len(parts) == 1 else [f"method=[{','.join(parts)}]"]


def base_overrides(args: argparse.Namespace) -> list[str]:
    """The protocol shared by every run."""
    return [
        "strategy=fedavg",
        f"federation.num_clients={args.num_clients}",
        f"federation.rounds_per_task={args.rounds_per_task}",
        f"train.local_epochs={args.local_epochs}",
        f"stream.num_tasks={args.num_tasks}",
        f"model.hidden=[{','.join(map(str, args.hidden))}]",
        "stream.partition=dirichlet",
        f"stream.alpha={args.alpha}",
        f"eval.subset_size={args.eval_subset}",
        "output.plots=false",
        "checkpoint.enabled=false",  # nothing to resume inside a run this short
        "device=cpu",
        "backend=inprocess",  # the same loop and ClientApp in this process: same numbers, no Ray start-up
    ]


def _pct(key: str) -> Any:
    def cell(runs: list[dict[str, Any]]) -> str:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return mean_std(vals) if vals else "-"

    return cell


def _kib(key: str) -> Any:
    def cell(runs: list[dict[str, Any]]) -> str:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return f"{np.mean(vals) / 1024:.1f}" if vals else "-"

    return cell


def run_zoo(args: argparse.Namespace) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    """Every (seed, stream, method) run; returns summaries per stream and method, and the failures."""
    base = base_overrides(args)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in args.methods} for s in args.streams}
    failures: list[str] = []
    # seeds outermost: an interrupted zoo has every method at the same number of seeds; streams innermost:
    # every finished method has both streams
    for seed in args.seeds:
        for method in args.methods:
            for stream in args.streams:
                out = args.out.resolve() / stream
                if args.table_only:  # tabulate the finished runs, start none
                    path = out / slug(method) / f"seed{seed}" / "summary.json"
                    if path.exists():
                        results[stream][method].append(json.loads(path.read_text()))
                    continue
                try:
                    got = run_variants(out, [*base, *STREAMS[stream][1]], {method: method_overrides(method)}, [seed])
                except Exception as exc:  # one broken method must not stop the other runs
                    failures.append(f"{stream}/{method}/seed{seed}: {type(exc).__name__}: {str(exc)[:200]}")
                    print(f"[{stream} {method} seed {seed}] FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                results[stream][method].extend(got[method])
    return results, failures


def _command(args: argparse.Namespace) -> str:
    """The command that (re)makes these runs, with every protocol flag spelled out."""
    parts = ["nice -n 15 python -m simulations.benchmarks.method_zoo", "--seeds", *map(str, args.seeds)]
    if args.methods != zoo_methods():
        parts += ["--methods", *args.methods]
    if args.streams != list(STREAMS):
        parts += ["--streams", *args.streams]
    parts += [f"--rounds-per-task {args.rounds_per_task}", f"--local-epochs {args.local_epochs}",
              f"--eval-subset {args.eval_subset}", f"--num-tasks {args.num_tasks}",
              f"--num-clients {args.num_clients}", f"--alpha {args.alpha}",
              "--hidden " + " ".join(map(str, args.hidden))]
    return " ".join(parts)


def write_results(
    args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]], failures: list[str]
) -> str:
    """``results/method_zoo.md``: the protocol, then one table per stream."""
    command = _command(args)
    protocol = (
        f"Protocol: FedAvg, {args.num_clients} clients (all every round), Dirichlet({args.alpha}) label split per "
        f"task, {args.num_tasks} tasks, {args.rounds_per_task} rounds per task, {args.local_epochs} local epoch(s), "
        f"MLP 784-{'-'.join(map(str, args.hidden))}-10, SGD lr 0.05 batch 64, per-round eval subset "
        f"{args.eval_subset} per task, accuracy "
        "matrix on the full test split at each task end, `backend=inprocess`. Method parameters: their YAML "
        "defaults; `a+b` is the composition `method=[a,b]`. Metrics in percent, mean ± std over seeds, from the "
        "accuracy matrix A (A[i, j]: task j after task i, T the last task): ACC = mean_j A[T, j]; "
        "forgetting = mean_{j<T} (A[j, j] - A[T, j]), FOT's form, which is exactly -BWT; forgetting (max) = "
        "mean_{j<T} (max_{j<=l<T} A[l, j] - A[T, j]), the max-drop form of Chaudhry et al. 2018; BWT = backward "
        "transfer; min-ACC / WC-ACC as in De Lange et al. 2023; state = method state per client "
        "(`state_bytes_mean` = mean over rounds of the clients' mean, `state_bytes_max` = largest client)."
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    parts = [f"# Method zoo: FedAvg x local continual-learning methods\n\nCommand: `{command}`\n\n"
             f"Table written {when} (load average 1/5/15 min at writing: {load}).\n\n{protocol}\n"]
    extra = {"forgetting (max)": _pct("forgetting_max"), "state KiB (mean)": _kib("state_bytes_mean"),
             "state KiB (max)": _kib("state_bytes_max")}
    for stream in args.streams:
        done = {m: runs for m, runs in results[stream].items() if runs}
        if not done:
            continue
        text = write_table(Path(os.devnull), STREAMS[stream][0], command, done, extra)
        text = text.replace("| forgetting | bwt |", "| forgetting (= -BWT) | bwt |", 1)
        parts.append("#" + text.split("\n", 1)[0] + "\n" + text.split("\n", 1)[1].split("\n", 3)[3].rstrip() + "\n")
    if args.note:
        parts.append(args.note.strip() + "\n")
    if failures:
        parts.append("## Failed runs\n\n" + "\n".join(f"- {f}" for f in failures) + "\n")
    text = "\n".join(parts)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=None, help="default: naive, every method, joint")
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--rounds-per-task", type=int, default=2)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--eval-subset", type=int, default=200)
    parser.add_argument("--num-tasks", type=int, default=5)
    parser.add_argument("--num-clients", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="MLP hidden layer widths")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_zoo"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file the tables go to")
    parser.add_argument("--table-only", action="store_true", help="only tabulate runs already finished")
    parser.add_argument("--note", default="", help="text appended under the tables (e.g. how the runs were made)")
    args = parser.parse_args(argv)
    known = zoo_methods()
    args.methods = args.methods or known
    options = set(group_options("method"))
    unknown = [m for m in args.methods if not set(m.split("+")) <= options]
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {known} or join options with '+'")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    results, failures = run_zoo(args)
    print(write_results(args, results, failures))
    print(f"zoo: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
