"""Optional experiment trackers fed one row per round: TensorBoard, Weights & Biases, MLflow.

Each is off unless its ``logging.<name>`` key is true, and imported only then:
none is a dependency of fedcl (TensorBoard is the ``tensorboard`` extra). A
tracker that is enabled but not installed is an error naming the package, so a
grid never runs for hours without the logs the user asked for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

from fedcl.config import Config, flatten
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.metrics import Tracker


class RoundSink(Protocol):
    """Receives the scalars of one round."""

    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def round_scalars(row: dict[str, Any], forgetting_so_far: float | None) -> dict[str, float]:
    """The scalars of a ``metrics.jsonl`` row, under TensorBoard-style tag names."""
    out: dict[str, float] = {}
    for t, a in (row.get("acc_per_task") or {}).items():
        out[f"acc/task_{t}"] = float(a)
    for t, v in (row.get("loss_per_task") or {}).items():
        out[f"eval_loss/task_{t}"] = float(v)
    for key, tag in (("mean_acc_seen", "acc/mean_seen"), ("current_task_acc", "acc/current_task"),
                     ("train_loss", "train/loss"), ("bytes_up", "comm/bytes_up"), ("bytes_down", "comm/bytes_down"),
                     ("failures", "train/failures"), ("failed_clients", "faults/failed_clients"),
                     ("rejected_clients", "faults/rejected_clients"), ("seconds", "time/round_s"),
                     ("epsilon", "privacy/epsilon")):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[tag] = float(v)
    if forgetting_so_far is not None and math.isfinite(forgetting_so_far):
        out["forgetting/so_far"] = float(forgetting_so_far)
    return out


class _TensorBoard:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch imports the `tensorboard` package lazily
            raise ConfigError("logging.tensorboard", True, "pip install 'fedcl[tensorboard]' (tensorboard)") from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, v in scalars.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_dir: Path, cfg: dict[str, Any], project: str) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ConfigError("logging.wandb", True, "install wandb (not a fedcl dependency)") from exc
        self.run = wandb.init(project=project, dir=str(run_dir), config=cfg, name=run_dir.name, reinit=True)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir: Path, cfg: dict[str, Any], experiment: str) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ConfigError("logging.mlflow", True, "install mlflow (not a fedcl dependency)") from exc
        self.mlflow = mlflow
        mlflow.set_experiment(experiment)
        mlflow.start_run(run_name=run_dir.name)
        mlflow.log_params({k: str(v)[:250] for k, v in flatten(cfg).items()})

    def log(self, step: int, scalars: dict[str, float]) -> None:
        # MLflow metric names may not contain some characters; '/' is allowed
        self.mlflow.log_metrics(scalars, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class RoundLoggers(RoundHook):
    """Every enabled tracker of a run, fed one row per round (a round hook).

    Parameters
    ----------
    cfg : Config
        The run config (``logging``: ``tensorboard``, ``wandb``, ``mlflow``, ``project``).
    run_dir : Path
        The run folder (TensorBoard writes ``<run_dir>/tensorboard``).
    tracker : Tracker
        The run's tracker (the forgetting so far, logged with every row).
    """

    name = "loggers"

    def __init__(self, cfg: Config, run_dir: Path, tracker: Tracker) -> None:
        block = cfg.logging
        self.tracker = tracker
        self.sinks: list[RoundSink] = []
        if block.tensorboard:
            self.sinks.append(_TensorBoard(run_dir / "tensorboard"))
        if block.wandb:
            self.sinks.append(_WandB(run_dir, cfg.dump(), block.project))
        if block.mlflow:
            self.sinks.append(_MLflow(run_dir, cfg.dump(), block.project))

    def on_row(self, server_round: int, row: dict[str, Any], ended: list[int]) -> None:
        """Send one round's scalars (step = server round) to every tracker."""
        if not self.sinks:
            return
        scalars = round_scalars(row, self.tracker.forgetting_so_far())
        for sink in self.sinks:
            sink.log(int(row["round"]), scalars)

    def close(self) -> None:
        """Flush and close every tracker (also when the run stops on an error)."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []
