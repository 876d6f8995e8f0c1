"""Federated unlearning inside the stream: every method against the retrain oracle, random vs worst-case forget sets.

Command (results in simulations/benchmarks/results/unlearning.md):

    python -m simulations.benchmarks.unlearning [--seeds 0 1 2] [--scenarios random worst]
        [--access history buffer] [--methods ssd ga fed_eraser iau] [--protocol small]

Split Fashion-MNIST, class-incremental (5 tasks of 2 classes), 5 clients with a
Dirichlet(0.5) label split, MLP 784-256-256-10, ER (200-sample reservoir buffer per
client) as the local continual method, 3 rounds per task. One deletion request of
``--samples`` training samples after round 8 (task 2, its 2nd round):

* ``random``: drawn uniformly from the remaining training data of the seen tasks;
* ``worst``: the hardest to unlearn (:mod:`fedcl.unlearning.forget_sets`), chosen on
  the model of round 8 by the ``none`` run and handed to every other run;
* ``class`` / ``client``: class 4 / client 1 (optional scenarios).

Per scenario and seed: ``none`` first (it writes the sample sets), then the retrain
oracle (``unlearning=retrain``), then every method under each ``--access`` rule with
``unlearning.oracle_dir`` pointing at the oracle. 10% of every client's data is held
out before training (``unlearning.holdout``): the non-members of the attacks. A run
whose ``summary.json`` exists is reused (the benchmark resumes); ``--table-only``
writes the table from what exists.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.config import compose
from simulations.benchmarks.common import machine

PROTOCOLS = {
    "small": ["federation.num_clients=5", "federation.rounds_per_task=3", "eval.subset_size=500",
              "unlearning.eval_samples=1000", "method=er", "backend=inprocess", "quiet=true", "output.plots=false",
              "checkpoint.enabled=false"],
    "quick": ["federation.num_clients=3", "federation.rounds_per_task=2", "stream.num_tasks=3",
              "eval.subset_size=300", "unlearning.eval_samples=500", "method=er", "backend=inprocess",
              "quiet=true", "output.plots=false", "checkpoint.enabled=false"],
}
METHODS = ["ssd", "ga", "fed_eraser", "iau"]
NOTES = "## Notes"


def _round(protocol: str) -> int:
    return 8 if protocol == "small" else 4


def _request(scenario: str, rnd: int, samples: int) -> str:
    target = {"class": 4, "client": 1}.get(scenario, samples)
    return f"unlearning.requests=[{{round:{rnd},kind:{scenario},target:{target}}}]"


def run_cached(cfg_overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """One in-process run (``backend=inprocess``), or its summary when it already finished."""
    path = run_dir / "summary.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    from simulations.run import run

    t0 = time.perf_counter()
    summary = run(compose(cfg_overrides), run_dir)
    print(f"  {run_dir.relative_to(run_dir.parents[2])}: {time.perf_counter() - t0:.0f} s", flush=True)
    return summary


def run_cell(out: Path, protocol: str, scenario: str, seed: int, access: list[str], methods: list[str],
             samples: int, extra: list[str]) -> None:
    """Every run of one (scenario, seed): none, the oracle, each method under each access rule."""
    base = [*PROTOCOLS[protocol], f"seed={seed}", _request(scenario, _round(protocol), samples), *extra]
    cell = out / scenario / f"seed{seed}"
    run_cached([*base, "unlearning=none"], cell / "none")  # first: it chooses the sample sets
    sets = cell / "none" / "unlearning" / "forget-sets.json"
    given = [f"unlearning.forget_sets={sets}"] if sets.exists() else []
    run_cached([*base, "unlearning=retrain", *given], cell / "retrain")
    oracle = [f"unlearning.oracle_dir={cell / 'retrain'}", *given]
    run_cached([*base, "unlearning=none", *oracle], cell / "none_vs_oracle")
    for acc in access:
        for m in methods:
            run_cached([*base, f"unlearning={m}", f"unlearning.data_access={acc}", *oracle], cell / f"{m}_{acc}")


def _load(out: Path, scenario: str, seeds: list[int], name: str) -> list[dict[str, Any]]:
    jobs = []
    for s in seeds:
        path = out / scenario / f"seed{s}" / name / "summary.json"
        if path.exists():
            summary = json.loads(path.read_text())
            jobs.append({**summary["unlearning"]["jobs"][0], "final_acc": summary["acc"]})
    return jobs


def _fmt(vals: list[Any], scale: float = 100.0, digits: int = 1) -> str:
    v = [float(x) for x in vals if x is not None]
    if not v:
        return "-"
    s = f"{scale * np.mean(v):.{digits}f}"
    return s + (f" ± {scale * np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else "")


def _row(label: str, jobs: list[dict[str, Any]], oracle_row: bool = False) -> str:
    def get(*path: str) -> list[Any]:
        out = []
        for j in jobs:
            v: Any = j
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            out.append(v)
        return out

    if oracle_row:
        cells = [label, _fmt(get("after", "forget_acc")), _fmt(get("after", "test_acc")), "0", "0", "0",
                 _fmt(get("after", "mia_auc_loss")), "0", "50.0 (by construction)", "-",
                 _fmt(get("rounds"), 1, 0), _fmt(get("seconds"), 1, 1), _fmt(get("final_acc"))]
    else:
        g = ("oracle", "gap_after")
        cells = [label, f"{_fmt(get('before', 'forget_acc'))} → {_fmt(get('after', 'forget_acc'))}",
                 _fmt(get("after", "test_acc")), _fmt(get(*g, "test_acc")), _fmt(get(*g, "forget_kl"), 1, 3),
                 _fmt(get(*g, "test_kl"), 1, 3), _fmt(get("after", "mia_auc_loss")), _fmt(get(*g, "mia_auc_loss")),
                 f"{_fmt(get('oracle', 'gap_before', 'mia_auc_calibrated'))} → {_fmt(get(*g, 'mia_auc_calibrated'))}",
                 _fmt(get("retain_drop_old_tasks")), _fmt(get("rounds"), 1, 0), _fmt(get("seconds"), 1, 2),
                 _fmt(get("final_acc"))]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| method | forget acc (before → after) | test acc | Δ test acc vs oracle | KL(oracle ‖ model), forget | "
          "KL(oracle ‖ model), test | MIA AUC (loss) | Δ MIA AUC vs oracle | calibrated MIA AUC (before → after) | "
          "old-task retain drop | rounds | seconds | final ACC |\n|" + "---|" * 13)


def table(out: Path, scenario: str, seeds: list[int], access: list[str], methods: list[str]) -> str:
    """The markdown section of one scenario: the oracle, ``none``, then each method per access rule."""
    rows = [_row("retrain (oracle)", _load(out, scenario, seeds, "retrain"), oracle_row=True),
            _row("none", _load(out, scenario, seeds, "none_vs_oracle"))]
    for acc in access:
        rows += [_row(f"{m} ({acc})", _load(out, scenario, seeds, f"{m}_{acc}")) for m in methods]
    n = len(_load(out, scenario, seeds, "retrain"))
    return f"### `{scenario}` forget set ({n} seed(s))\n\n" + HEADER + "\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="small")
    parser.add_argument("--scenarios", nargs="+", choices=["random", "worst", "class", "client"],
                        default=["random", "worst"])
    parser.add_argument("--access", nargs="+", choices=["history", "buffer"], default=["history", "buffer"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--samples", type=int, default=200, help="samples of a random / worst forget set")
    parser.add_argument("--out", type=Path, default=None, help="run folders (default runs/bench_unlearning_<protocol>)")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run (e.g. device=cpu)")
    parser.add_argument("--table-only", action="store_true", help="write the table from the finished runs")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = (args.out or Path(f"runs/bench_unlearning_{args.protocol}")).resolve()
    t0 = time.perf_counter()
    if not args.table_only:
        for seed in args.seeds:  # seeds outermost: a cut-off benchmark has every scenario at the same seeds
            for scen in args.scenarios:
                run_cell(out, args.protocol, scen, seed, args.access, args.methods, args.samples, args.extra)
                _write(args, out, time.perf_counter() - t0)
    _write(args, out, time.perf_counter() - t0)


def _write(args: argparse.Namespace, out: Path, seconds: float) -> None:
    cmd = ("python -m simulations.benchmarks.unlearning "
           f"--protocol {args.protocol} --seeds {' '.join(map(str, args.seeds))} "
           f"--scenarios {' '.join(args.scenarios)} "
           f"--access {' '.join(args.access)} --methods {' '.join(args.methods)} --samples {args.samples}"
           + (f" --extra {' '.join(args.extra)}" if args.extra else ""))
    sections = [table(out, s, args.seeds, args.access, args.methods) for s in args.scenarios]
    text = (f"# Federated unlearning in the stream (Split Fashion-MNIST, protocol `{args.protocol}`)\n\n"
            f"Command: `{cmd}`\n\nProtocol: `{' '.join(PROTOCOLS[args.protocol])}`, request after round "
            f"{_round(args.protocol)}; machine: {machine()}; this invocation {seconds:.0f} s; written "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} (1 min) / "
            f"{os.getloadavg()[2]:.1f} (15 min).\n\n"
            + "\n\n".join(sections) + "\n")
    path = Path(__file__).parent / "results" / "unlearning.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = path.read_text().split(NOTES, 1) if path.exists() else []
    path.write_text(text + ("\n" + NOTES + notes[1] if len(notes) == 2 else ""))  # hand-written notes stay
    print(text, flush=True)


if __name__ == "__main__":
    main()
