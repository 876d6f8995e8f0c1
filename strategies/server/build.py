"""Everything one run needs, built once from its config: stream, schedule, model, strategy, evaluator, hooks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.checkpoint import CLIENT_DIR
from fedcl.config import Config
from fedcl.data import Schedule, Stream, build_stream, make_schedule
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.metrics import Tracker
from fedcl.metrics.local import LocalForgetting
from fedcl.models import build_model
from fedcl.records import model_record
from fedcl.trainer import pick_device
from strategies import STRATEGIES
from strategies.fedavg import FCLFedAvg
from strategies.server.checkpoints import Checkpoints
from strategies.server.evaluator import CentralEvaluator
from strategies.server.grid import RunGrid
from strategies.server.loggers import RoundLoggers
from strategies.server.progress import ConsoleProgress


@dataclass
class Run:
    """The parts of one run and the global model the round loop carries from round to round.

    Parameters
    ----------
    cfg : Config
        The run config.
    run_dir : Path
        Where every output goes.
    grid : Grid
        The grid every server part talks through (:class:`~strategies.server.grid.RunGrid`;
        SecAgg+'s around it when secure aggregation is on).
    stream, schedule : Stream, Schedule
        The task stream and which client trains which task when.
    strategy : FCLFedAvg
        The server strategy.
    evaluator : CentralEvaluator
        Central evaluation of the global model.
    tracker : Tracker
        Per-round rows, the accuracy matrix, ``metrics.jsonl`` and ``summary.json``.
    hooks : list[RoundHook]
        Everything else the round loop calls by name, in call order.
    arrays : ArrayRecord
        The global model.
    """

    cfg: Config
    run_dir: Path
    grid: Grid
    stream: Stream
    schedule: Schedule
    strategy: FCLFedAvg
    evaluator: CentralEvaluator
    tracker: Tracker
    hooks: list[RoundHook]
    arrays: ArrayRecord
    t_start: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0

    def elapsed(self) -> float:
        """Seconds of the run so far (before a resume included)."""
        return self.elapsed_before + time.perf_counter() - self.t_start

    def snapshot(self) -> dict[str, Any]:
        """The server state a checkpoint holds (the client states are copied beside it)."""
        return {"arrays": self.arrays.to_torch_state_dict(), "strategy": self.strategy.state_dict(),
                "tracker": self.tracker.state_dict(), "hooks": {h.name: h.state_dict() for h in self.hooks},
                "elapsed_s": self.elapsed(), "total_rounds": self.schedule.total_rounds}


def build_strategy(cfg: Config, schedule: Schedule, state_dir: str | None) -> FCLFedAvg:
    """The strategy of ``cfg.strategy``, with client-level DP's averaging step when ``privacy.dp`` is set.

    A strategy whose server logic needs each client's own update declares it with a class
    attribute ``individual_updates_reason``; secure aggregation refuses it.
    """
    cls = STRATEGIES.get(cfg.strategy.name)
    refuse_individual_updates(cls, cfg)
    averager = None
    if cfg.privacy.dp is not None:
        from strategies.privacy import PrivateAveraging

        if cfg.strategy.aggregator != "mean":
            raise ConfigError("strategy.aggregator", cfg.strategy.aggregator,
                              "'mean' under differential privacy (the noise is calibrated to the mean's sensitivity)")
        averager = PrivateAveraging(cfg.privacy.dp, cfg.seed, cfg.federation.num_clients, cfg.federation.per_round,
                                    keys.NUM_EXAMPLES)
    strategy: FCLFedAvg = cls(cfg=cfg, schedule=schedule, state_dir=state_dir, averager=averager)
    return strategy


def refuse_individual_updates(cls: type, cfg: Config) -> None:
    """Refuse a strategy that declares ``individual_updates_reason`` under secure aggregation (it sees sums only)."""
    reason = getattr(cls, "individual_updates_reason", None)
    if cfg.privacy.secure_aggregation and reason:
        raise ConfigError("privacy.secure_aggregation", True,
                          f"strategy '{cfg.strategy.name}' needs individual client updates ({reason}); "
                          "secure aggregation only gives the server their sum: use privacy=none or dp_central")


def subspace_hooks(cfg: Config, schedule: Schedule, strategy: FCLFedAvg, tracker: Tracker) -> list[RoundHook]:
    """Subspace occupancy per layer and task: FOT's global bases, GPM's client bases (fedcl/fot/occupancy.py)."""
    from fedcl.fot.occupancy import SubspaceOccupancy
    from strategies.fot import FOT

    hooks: list[RoundHook] = []
    if isinstance(strategy, FOT):
        hooks.append(SubspaceOccupancy("fot", schedule, tracker, strategy.occupancy))
    if "gpm" in cfg.method_names:
        hooks.append(SubspaceOccupancy("gpm", schedule, tracker))
    return hooks


def build_run(grid: Grid, cfg: Config, run_dir: Path) -> Run:
    """Build every part of a run on ``grid`` (Flower's, or the in-process engine's)."""
    fed = cfg.federation
    stream = build_stream(cfg.stream, fed.num_clients, cfg.seed)
    stream.cache.set_budget(cfg.backend.data_cache_mb)  # cached eval subsets / test splits
    schedule = make_schedule(cfg.schedule, len(stream.tasks), fed.rounds_per_task, fed.num_clients, cfg.seed)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    strategy = build_strategy(cfg, schedule, str(run_dir / CLIENT_DIR))
    model = strategy.server_model(model)  # strategy=analytic: loads its analytic head
    run_grid: Grid = RunGrid(grid, cfg.backend.pull_interval_s)
    hooks: list[RoundHook] = []
    if strategy.averager is not None:
        hooks.append(strategy.averager)  # type: ignore[arg-type]
    if cfg.privacy.secure_aggregation:  # SecAgg+: strategies only ever get sums
        from strategies.secagg import SecAggPlusGrid, max_client_examples

        assert cfg.privacy.secagg is not None
        secure = SecAggPlusGrid(run_grid, cfg.privacy.secagg, max_client_examples(stream, fed.num_clients),
                                fed.min_replies)
        hooks.append(secure)
        run_grid = secure
    tracker = Tracker(len(stream.tasks), run_dir)
    if cfg.eval.local_forgetting:  # clients' own-model accuracies, taken out of the replies before aggregation
        hooks.append(LocalForgetting(schedule, tracker))
    if cfg.unlearning["requests"]:  # deletion requests (unlearning=)
        from strategies.unlearning import UnlearningRunner

        hooks.append(UnlearningRunner(cfg, stream, schedule, strategy, model, run_dir))
    hooks += subspace_hooks(cfg, schedule, strategy, tracker)
    hooks += [ConsoleProgress(tracker, schedule.total_rounds, cfg.quiet), RoundLoggers(cfg, run_dir, tracker)]
    evaluator = CentralEvaluator(stream, model, cfg.eval.subset_size, cfg.eval.batch_size)
    run = Run(cfg, run_dir, run_grid, stream, schedule, strategy, evaluator, tracker, hooks, model_record(model))
    run.hooks.append(Checkpoints(cfg, run_dir, run.snapshot))  # last: every other part has finished its round
    return run
