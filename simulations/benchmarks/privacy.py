"""Privacy benchmark: SecAgg+ round-time overhead, and FedAvg / FOT accuracy at a few DP noise levels.

Command (results in simulations/benchmarks/results/privacy.md):

    python -m simulations.benchmarks.privacy [--seeds 0] [--experiment demo_pmnist] [--out DIR] [--only NAME ...]
    python -m simulations.benchmarks.privacy --protocol-only   # SecAgg+ protocol alone, in-process
    python -m simulations.benchmarks.privacy --dp-experiment [--epsilons 8 4 1] [--gpse-ratios 1 4 16]

Every variant is a real Flower simulation (``simulations.run.run``) of the same small stream
(``experiment=demo_pmnist``: 3 Permuted Fashion-MNIST tasks, 3 clients, 3 rounds per task).

* ``privacy=secagg`` (Bell et al., CCS 2020, through Flower's SecAgg+): the time per round is
  compared with the same strategy in the clear (ratio of median round time, training included);
* ``privacy=dp_central`` (McMahan et al., ICLR 2018; client-side clipping to C = 1, Gaussian
  noise z C / m on the mean of m = 3 updates) at the noise multipliers ``NOISE``; epsilon is the
  RDP accountant's over the whole stream (all rounds of all tasks) at delta = 1e-5, without
  subsampling credit. With only 3 clients the noise that gives a small epsilon swamps the mean
  update; the table shows that trade-off, not a recommended setting.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from simulations.benchmarks.common import run_variants, write_table

NOISE = (0.01, 0.1, 0.3)  # noise multipliers z (the epsilon levels follow from them); z=1 diverges here


def variants() -> dict[str, list[str]]:
    """Configurations in the order they run (the most informative first)."""
    out: dict[str, list[str]] = {}
    for strat, name in (("fedavg", "FedAvg"), ("fot", "FOT")):
        out[f"{name} clear"] = [f"strategy={strat}", "privacy=none"]
        out[f"{name} SecAgg+"] = [f"strategy={strat}", "privacy=secagg"]
    for z in NOISE:
        for strat, name in (("fedavg", "FedAvg"), ("fot", "FOT")):
            out[f"{name} DP z={z}"] = [f"strategy={strat}", "privacy=dp_central", f"privacy.dp.noise_multiplier={z}"]
    return out


# ---- --dp-experiment: epsilon vs accuracy where client-level DP is meaningful (experiment=dp_pmnist) ----------
DP_EXPERIMENT = "dp_pmnist"
DP_BASE = ["privacy=dp_central", "privacy.dp.sampling=without_replacement", "privacy.dp.clipping_norm=1.0"]
GPSE_RATIO = 4.0  # FOT's DP-GPSE multiplier / its training multiplier in the epsilon rows (see ``dp_variants``)


def planned_epsilon(cfg: Any, z: float, gpse_z: float | None) -> float:
    """Epsilon at ``privacy.dp.delta`` of a run of ``cfg`` that trains every round at multiplier ``z``.

    The releases the strategies compose: one per round (the clients per round out of every client, none
    excluded), and with ``gpse_z`` one DP-GPSE release per task over the clients that trained it (not
    subsampled; their number is the expected count under uniform sampling, rounded up).
    """
    from fedcl.privacy.accountant import Release, StreamAccountant

    fed, dp = cfg.federation, cfg.privacy.dp
    acc = StreamAccountant(delta=dp.delta, sampling=dp.sampling)
    q = fed.per_round / fed.num_clients
    trained = math.ceil(fed.num_clients * (1 - (1 - q) ** fed.rounds_per_task))
    for _task in range(cfg.stream.num_tasks):
        acc.compose(Release(z, fed.per_round, fed.num_clients), fed.rounds_per_task)
        if gpse_z is not None:
            acc.compose(Release(gpse_z, trained, trained, kind="gpse"))
    return acc.epsilon


def calibrate(cfg: Any, epsilon: float, gpse_ratio: float | None) -> float:
    """The training multiplier z whose run ends at ``epsilon`` (bisection on :func:`planned_epsilon`, 1e-3)."""
    lo, hi = 0.3, 200.0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if planned_epsilon(cfg, mid, None if gpse_ratio is None else gpse_ratio * mid) > epsilon:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-3:
            break
    return hi


def dp_variants(epsilons: list[float], gpse_ratios: list[float], large: int = 10_000) -> dict[str, list[str]]:
    """The ``--dp-experiment`` rows, most informative first (everything on ``dp_pmnist``).

    FedAvg and FOT in the clear; at each target epsilon FedAvg (z calibrated to it) and FOT (z and a DP-GPSE
    multiplier of ``GPSE_RATIO`` z calibrated together); after the first epsilon, FOT at that epsilon's training
    noise with each DP-GPSE ratio in ``gpse_ratios`` (what noising the sketches costs); and the smallest epsilon
    again with ``large`` clients, a tenth of them per round (the same sampling rate, so the same z, but the noise
    on the mean is z C / m with ten times the m).
    """
    from fedcl.config import compose

    cfg = compose([f"experiment={DP_EXPERIMENT}", *DP_BASE])
    big = [f"federation.num_clients={large}", f"federation.clients_per_round={large // 10}"]

    def fedavg(z: float, *extra: str) -> list[str]:
        return ["strategy=fedavg", *DP_BASE, *extra, f"privacy.dp.noise_multiplier={z:.4g}"]

    def fot(z: float, ratio: float, *extra: str) -> list[str]:
        return ["strategy=fot", *DP_BASE, *extra, f"privacy.dp.noise_multiplier={z:.4g}",
                f"privacy.dp.gpse_noise_multiplier={ratio * z:.4g}"]

    out: dict[str, list[str]] = {"FedAvg clear": ["strategy=fedavg"], "FOT clear": ["strategy=fot"]}
    for i, eps in enumerate(epsilons):
        z = calibrate(cfg, eps, None)
        out[f"FedAvg eps~{eps:g} (z={z:.3g})"] = fedavg(z)
        zf = calibrate(cfg, eps, GPSE_RATIO)
        out[f"FOT eps~{eps:g} (z={zf:.3g}, GPSE {GPSE_RATIO:g}z)"] = fot(zf, GPSE_RATIO)
        if i == 0:
            for r in gpse_ratios:
                out[f"FOT z={zf:.3g}, GPSE {r:g}z"] = fot(zf, r)
    if epsilons and large:
        eps = min(epsilons)
        cfg_big = compose([f"experiment={DP_EXPERIMENT}", *DP_BASE, *big])
        z = calibrate(cfg_big, eps, None)
        out[f"FedAvg eps~{eps:g} (z={z:.3g}), {large} clients"] = fedavg(z, *big)
        zf = calibrate(cfg_big, eps, GPSE_RATIO)
        out[f"FOT eps~{eps:g} (z={zf:.3g}, GPSE {GPSE_RATIO:g}z), {large} clients"] = fot(zf, GPSE_RATIO, *big)
    return out


def _round_s(runs: list[dict[str, Any]]) -> float:
    """Median seconds per round (round 1 pays Ray's start and data loading), mean over seeds."""
    out = []
    for r in runs:
        rows = [json.loads(x) for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        out.append(float(np.median([row["seconds"] for row in rows])))
    return float(np.mean(out))


def _secagg_s(runs: list[dict[str, Any]]) -> str:
    """Median seconds per round inside the SecAgg+ protocol (all four stages, training included)."""
    vals = []
    for r in runs:
        rows = [json.loads(x) for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        vals.append(float(np.median([row.get("secagg_seconds", 0.0) for row in rows])))
    return "-" if not any(vals) else f"{np.mean(vals):.1f}"


def _epsilon(runs: list[dict[str, Any]]) -> str:
    eps = [r.get("privacy", {}).get("epsilon") for r in runs]
    return "-" if not eps or not eps[0] else f"{np.mean(eps):.3g}"


def _ratio(results: dict[str, list[dict[str, Any]]], name: str) -> str:
    base = name.replace("SecAgg+", "clear")
    if "SecAgg+" not in name or base not in results or not results[base]:
        return "-"
    return f"{_round_s(results[name]) / _round_s(results[base]):.2f}"


def _fixed_update_app() -> Any:
    """A ClientApp (behind fedcl's privacy mod) whose ``train`` handler adds a fixed update: no training."""
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    import fedcl.keys as keys
    from fedcl.privacy.client_mod import privacy_mod

    app = ClientApp(mods=[privacy_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        w = msg.content[keys.ARRAYS]["w"].numpy()  # type: ignore[index,union-attr]
        return Message(RecordDict({keys.ARRAYS: ArrayRecord({"w": Array(w + 1e-3 * context.node_id)}),
                                   keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 100})}), reply_to=msg)

    return app


def protocol_overhead(num_params: int, clients: int, repeats: int = 3) -> dict[str, float]:
    """Seconds for one round of ``clients`` replies of ``num_params`` floats, in the clear vs through SecAgg+.

    In-process (no Ray, no training): a ClientApp whose ``train`` handler adds a fixed update,
    behind fedcl's privacy mod, so the difference is the SecAgg+ protocol alone (key agreement,
    Shamir shares, masking, quantisation, unmasking) plus the vectorisation of the bridge.
    """
    import copy
    import time

    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    import fedcl.keys as keys
    from fedcl.config import compose, to_json
    from strategies.secagg import SecAggPlusGrid

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    app = _fixed_update_app()

    class Direct:  # delivers each message to its node's Context, as one SuperNode each
        def __init__(self) -> None:
            self.ctx = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={})
                        for n in range(1, clients + 1)}
            self.i = 0

        def get_node_ids(self) -> list[int]:
            return list(self.ctx)

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
            out = []
            for m in messages:
                self.i += 1
                m.metadata.__dict__["_src_node_id"], m.metadata.__dict__["_message_id"] = 0, f"m{self.i}"
                r = app(copy.deepcopy(m), self.ctx[m.metadata.dst_node_id])  # as serialisation would
                r.metadata.__dict__["_src_node_id"] = m.metadata.dst_node_id
                out.append(r)
            return out

    cfg = compose(["stream=synthetic", f"federation.num_clients={clients}", "privacy=secagg"])
    base = ArrayRecord({"w": Array(np.zeros(num_params, np.float32))})

    def msgs() -> list[Message]:
        return [Message(RecordDict({keys.ARRAYS: base, keys.CONFIG: ConfigRecord({
            keys.SERVER_ROUND: 1, keys.CLIENT_ID: n - 1, keys.RUN_CONFIG_JSON: to_json(cfg)})}),
            dst_node_id=n, message_type=MessageType.TRAIN) for n in range(1, clients + 1)]

    times: dict[str, list[float]] = {"clear": [], "secagg": []}
    for _ in range(repeats):
        secagg = cfg.privacy.secagg
        assert secagg is not None
        for name, grid in (("clear", Direct()), ("secagg", SecAggPlusGrid(Direct(), secagg, 100))):  # type: ignore[arg-type]
            t0 = time.perf_counter()
            grid.send_and_receive(msgs())
            times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--experiment", default="demo_pmnist")
    parser.add_argument("--out", type=Path, default=None, help="run folders (default runs/bench_privacy)")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    parser.add_argument("--protocol-only", action="store_true",
                        help="only time the SecAgg+ protocol in-process (no Ray, no training) and print it")
    parser.add_argument("--dp-experiment", action="store_true",
                        help=f"epsilon vs accuracy on experiment={DP_EXPERIMENT} (FedAvg, FOT, DP-GPSE levels) "
                        "into results/privacy_dp.md")
    parser.add_argument("--epsilons", type=float, nargs="*", default=[8.0, 4.0, 1.0])
    parser.add_argument("--large-population", type=int, default=10_000,
                        help="clients of the smallest epsilon's extra rows (a tenth per round; 0: none)")
    parser.add_argument("--gpse-ratios", type=float, nargs="*", default=[1.0, 16.0],
                        help="DP-GPSE multiplier / training multiplier of the DP-GPSE rows")
    args = parser.parse_args()
    if args.dp_experiment:
        return dp_experiment(args)
    if args.protocol_only:
        import logging

        logging.getLogger("flwr").setLevel(logging.WARNING)
        for n_params in (10_000, 270_000):  # 270k: demo_pmnist's MLP 784-256-256-10
            for k in (3, 10):
                t = protocol_overhead(n_params, k)
                print(f"| {n_params} | {k} | {t['clear']:.3f} | {t['secagg']:.3f} | {t['secagg'] - t['clear']:.3f} |")
        return
    chosen = {k: v for k, v in variants().items() if not args.only or k in args.only}
    out = (args.out or Path("runs/bench_privacy")).resolve()
    base = [f"experiment={args.experiment}", "device=cpu"]
    command = f"python -m simulations.benchmarks.privacy --experiment {args.experiment} --seeds " + " ".join(
        map(str, args.seeds))
    results: dict[str, list[dict[str, Any]]] = {}
    for name, overrides in chosen.items():  # one variant at a time: the table is rewritten after each
        results.update(run_variants(out, base, {name: overrides}, args.seeds))
        table = write_table(
            Path(__file__).parent / "results" / "privacy.md",
            f"Privacy: SecAgg+ overhead and DP accuracy, experiment={args.experiment}",
            command,
            results,
            {
                "epsilon (delta=1e-5)": _epsilon,
                "s / round (median)": lambda runs: f"{_round_s(runs):.1f}",
                "of which SecAgg+ protocol": _secagg_s,
                "SecAgg+ / clear round time": lambda runs: _ratio(results, next(
                    k for k, v in results.items() if v is runs)),
            },
            notes="Percentages (ACC, forgetting, ...); mean ± std over seeds. Time per round = median of the "
            "rounds' `seconds` in metrics.jsonl (training, central evaluation and, for FOT, GPSE included); "
            "the SecAgg+ column is the median `secagg_seconds` (the four protocol stages, client training "
            "included). The machine (2 cores) is shared with other jobs, so timings are indicative.",
        )
    print(table)


def dp_experiment(args: argparse.Namespace) -> None:
    """``--dp-experiment``: every variant of :func:`dp_variants`, the table rewritten after each run."""
    rows = dp_variants(args.epsilons, args.gpse_ratios, args.large_population)
    chosen = {k: v for k, v in rows.items() if not args.only or k in args.only}
    out = (args.out or Path("runs/bench_privacy_dp")).resolve()
    command = ("python -m simulations.benchmarks.privacy --dp-experiment --seeds " + " ".join(map(str, args.seeds))
               + " --epsilons " + " ".join(f"{e:g}" for e in args.epsilons)
               + " --gpse-ratios " + " ".join(f"{r:g}" for r in args.gpse_ratios)
               + f" --large-population {args.large_population}")
    results: dict[str, list[dict[str, Any]]] = {}
    for name, overrides in chosen.items():
        try:
            results.update(run_variants(out, [f"experiment={DP_EXPERIMENT}", "device=cpu"], {name: overrides},
                                        args.seeds))
        except Exception as exc:  # a noise level the divergence guard refuses is a result too: keep going
            print(f"[{name}] refused / failed: {exc}", flush=True)
            continue
        table = write_table(
            Path(__file__).parent / "results" / "privacy_dp.md",
            f"Privacy: epsilon vs accuracy, experiment={DP_EXPERIMENT}", command, results,
            {"epsilon (delta=1e-5)": _epsilon, "s / round (median)": lambda runs: f"{_round_s(runs):.1f}"},
            notes="Percentages; mean ± std over seeds. Client-level central DP, client-side clipping C = 1, "
            "uniform sampling without replacement (replace-one neighbours: sensitivity 2C); epsilon is the "
            "run's accountant over every release (training rounds and, for FOT, one DP-GPSE release per task).",
        )
        print(table, flush=True)


if __name__ == "__main__":
    main()
