"""Federated unlearning inside the stream: none / retrain / SSD / GA / FedEraser on Split Fashion-MNIST.

Command (results in simulations/benchmarks/results/unlearning.md):

    python -m simulations.benchmarks.unlearning [--seeds 0] [--protocol small] [--transport inprocess|flower]

Two scenarios, each a single deletion request during task 2 of 5 (Split Fashion-MNIST,
class-incremental, 2 classes per task, Dirichlet(0.5) label split, MLP 784-256-256-10):

* ``class``: class 4 (of the current task 2, classes 4 and 5) is forgotten after round 8;
* ``client``: client 1 leaves after round 8 and asks for all its data to be forgotten.

For each scenario the retrain oracle runs first (``unlearning=retrain``); every other
method runs with ``unlearning.oracle_dir`` pointing at it, so its ``summary.json``
holds the gap to the oracle. ``--transport inprocess`` runs the production ServerApp
loop, strategy and client handlers in one process (only Flower's transport is
replaced: ``simulations/benchmarks/inprocess_grid.py``); ``flower`` runs real
simulations (SuperLink + Ray).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.config import compose

PROTOCOLS = {
    "small": ["federation.num_clients=5", "federation.rounds_per_task=3", "eval.subset_size=500",
              "unlearning.eval_samples=1000", "quiet=true"],
    "quick": ["federation.num_clients=3", "federation.rounds_per_task=2", "stream.num_tasks=3",
              "eval.subset_size=300", "unlearning.eval_samples=500", "quiet=true"],
}
SCENARIOS = {  # request served after round 8 of the small protocol (task 2, its 2nd round)
    "class": "{kind:class,target:4}",
    "client": "{kind:client,target:1}",
}
METHODS = ["none", "ssd", "ga", "fed_eraser"]


def _request_round(protocol: str) -> int:
    return 8 if protocol == "small" else 4


def run_one(cfg: dict[str, Any], run_dir: Path, transport: str) -> dict[str, Any]:
    """One run through real Flower simulation or the in-process grid; its summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if transport == "flower":
        from simulations.run import run

        return run(cfg, run_dir)
    from fedcl.unlearning.client import run_unlearn
    from simulations.benchmarks.inprocess_grid import InProcessGrid
    from strategies.server_app import run_federation

    grid = InProcessGrid(int(cfg["federation"]["num_clients"]))
    grid.handlers["query.unlearn"] = run_unlearn
    cfg["output"]["dir"] = str(run_dir)
    return run_federation(grid, cfg, run_dir)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def _row(method: str, runs: list[dict[str, Any]]) -> str:
    jobs = [r["unlearning"]["jobs"][0] for r in runs]

    def m(get: Any) -> list[float]:
        vals = [get(j) for j in jobs]
        return [float(v) for v in vals if v is not None]

    def fmt(vals: list[float], scale: float = 100.0, digits: int = 1) -> str:
        if not vals:
            return "-"
        s = f"{scale * np.mean(vals):.{digits}f}"
        return s + (f" ± {scale * np.std(vals):.{digits}f}" if len(vals) > 1 else "")

    def before(k: str) -> list[float]:
        return m(lambda j: (j.get("before") or {}).get(k))

    def after(k: str) -> list[float]:
        return m(lambda j: j["after"].get(k))

    def gap(k: str) -> list[float]:
        return m(lambda j: ((j.get("oracle") or {}).get("gap_after") or {}).get(k))

    cells = [
        method,
        f"{fmt(before('forget_acc'))} → {fmt(after('forget_acc'))}"
        if method != "retrain" else fmt(after("forget_acc")),
        f"{fmt(before('test_retain_acc'))} → {fmt(after('test_retain_acc'))}"
        if method != "retrain" else fmt(after("test_retain_acc")),
        fmt(after("test_acc")),
        fmt(gap("test_acc")) if method != "retrain" else "0",
        fmt(gap("test_kl"), 1.0, 3) if method != "retrain" else "0",
        f"{fmt(before('mia_auc_loss'))} → {fmt(after('mia_auc_loss'))}"
        if method != "retrain" else fmt(after("mia_auc_loss")),
        fmt(m(lambda j: j.get("retain_drop_old_tasks"))) if method != "retrain" else "-",
        fmt(m(lambda j: j["rounds"]), 1.0, 0),
        fmt(m(lambda j: j["seconds"]), 1.0, 2),
        fmt([r["acc"] for r in runs]),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| method | forget acc (before → after) | retain test acc (before → after) | test acc after | "
          "Δ test acc vs oracle | KL(oracle ‖ model), test | MIA AUC (before → after) | old-task retain drop | "
          "rounds spent | seconds | final ACC |\n|" + "---|" * 11)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="small")
    parser.add_argument("--transport", choices=["inprocess", "flower"], default="inprocess")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    parser.add_argument("--out", type=Path, default=None, help="run folders (default runs/bench_unlearning_<protocol>)")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run (e.g. device=cpu)")
    args = parser.parse_args()
    if args.transport == "inprocess":
        import torch

        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    out = (args.out or Path(f"runs/bench_unlearning_{args.protocol}")).resolve()
    rnd = _request_round(args.protocol)
    sections = []
    t0 = time.perf_counter()
    for scen in args.scenarios:
        req = f"unlearning.requests=[{SCENARIOS[scen][:1]}round:{rnd},{SCENARIOS[scen][1:]}]"
        results: dict[str, list[dict[str, Any]]] = {}
        for seed in args.seeds:
            base = [*PROTOCOLS[args.protocol], f"seed={seed}", req, *args.extra]
            oracle_dir = out / scen / f"retrain_s{seed}"
            results.setdefault("retrain", []).append(
                run_one(compose([*base, "unlearning=retrain"]), oracle_dir, args.transport))
            for method in METHODS:
                cfg = compose([*base, f"unlearning={method}", f"unlearning.oracle_dir={oracle_dir}"])
                results.setdefault(method, []).append(run_one(cfg, out / scen / f"{method}_s{seed}", args.transport))
                print(f"{scen} {method} seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows = [_row(m, results[m]) for m in ["retrain", *METHODS]]
        sections.append(f"### {scen}-level request: forget {SCENARIOS[scen]} after round {rnd}\n\n"
                        + HEADER + "\n" + "\n".join(rows))
        (out / f"{scen}_results.json").write_text(json.dumps(
            {m: [r["unlearning"] for r in rs] for m, rs in results.items()}, indent=1, default=str))
        _write(args, sections, t0)  # after every scenario: a cut-off benchmark keeps what it finished


def _write(args: argparse.Namespace, sections: list[str], t0: float) -> None:
    cmd = (f"python -m simulations.benchmarks.unlearning --protocol {args.protocol} --transport {args.transport} "
           f"--seeds {' '.join(map(str, args.seeds))}" + (f" --extra {' '.join(args.extra)}" if args.extra else ""))
    text = (f"# Federated unlearning in the stream (Split Fashion-MNIST, protocol `{args.protocol}`)\n\n"
            f"Command: `{cmd}`\n\nProtocol: `{' '.join(PROTOCOLS[args.protocol])}`; "
            f"{len(args.seeds)} seed(s); total {time.perf_counter() - t0:.0f} s.\n\n" + "\n\n".join(sections) + "\n")
    path = Path(__file__).parent / "results" / "unlearning.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
