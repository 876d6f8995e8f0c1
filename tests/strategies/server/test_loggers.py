"""Experiment trackers of a run (TensorBoard, W&B, MLflow): one row per round, read back or recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.metrics import Tracker
from strategies.server.loggers import RoundLoggers, round_scalars
from tests.conftest import synthetic_overrides


def _tracker() -> Tracker:
    """A tracker whose accuracy matrix so far has forgetting 0.1 (0.9 on task 0, then 0.8)."""
    tracker = Tracker(2, None)
    tracker.log_task_end(0, 2, [0.9, 0.1])
    tracker.log_task_end(1, 4, [0.8, 0.7])
    return tracker


def test_round_scalars_and_tensorboard_events(tmp_path: Path) -> None:
    row = {"round": 3, "acc_per_task": {"0": 0.9, "1": 0.5}, "loss_per_task": {"0": 0.3}, "mean_acc_seen": 0.7,
           "train_loss": 0.4, "bytes_up": 10, "bytes_down": 20, "epsilon": 1.5, "failures": 0}
    s = round_scalars(row, 0.1)
    assert s["acc/task_1"] == 0.5 and s["privacy/epsilon"] == 1.5 and s["forgetting/so_far"] == 0.1
    pytest.importorskip("tensorboard")
    loggers = RoundLoggers(compose(synthetic_overrides("logging.tensorboard=true")), tmp_path, _tracker())
    loggers.on_row(3, row, [])
    loggers.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # read the events back: the scalars are there, at the round as step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    (acc1,) = events.Scalars("acc/task_1")
    assert acc1.step == 3 and acc1.value == pytest.approx(0.5)
    assert events.Scalars("privacy/epsilon")[0].value == pytest.approx(1.5)


class _FakeTracker:
    """Stands in for the ``wandb`` / ``mlflow`` modules: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        def record(*args: object, **kwargs: object) -> _FakeTracker:
            self.calls.append((name, args, kwargs))
            return self

        return record


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_wandb_and_mlflow_get_one_log_call_per_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tracker: str) -> None:
    # Prepare: a fake module where the real one would be imported
    fake = _FakeTracker()
    monkeypatch.setitem(sys.modules, tracker, fake)
    cfg = compose(synthetic_overrides(f"logging.{tracker}=true", "logging.project=proj", "seed=3", "strategy=fot"))
    # Execute: two rounds, then close
    loggers = RoundLoggers(cfg, tmp_path, Tracker(2, None))
    for rnd in (1, 2):
        loggers.on_row(rnd, {"round": rnd, "acc_per_task": {"0": 0.5 + rnd / 10}, "train_loss": 1.0}, [])
    loggers.close()
    # Assert: the run opened with the project and config, logged both rounds at their step, and closed
    names = [c[0] for c in fake.calls]
    logs = [c for c in fake.calls if c[0] in ("log", "log_metrics")]
    assert [c[2]["step"] for c in logs] == [1, 2] and logs[1][1][0]["acc/task_0"] == pytest.approx(0.7)
    if tracker == "wandb":
        init = next(c for c in fake.calls if c[0] == "init")
        assert init[2]["project"] == "proj" and init[2]["config"]["seed"] == 3 and names[-1] == "finish"
    else:
        assert ("set_experiment", ("proj",), {}) in fake.calls and names[-1] == "end_run"
        params = next(c for c in fake.calls if c[0] == "log_params")[1][0]
        assert params["strategy.name"] == "fot"


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_enabled_tracker_that_is_not_installed_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  tracker: str) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=f"logging.{tracker}"):
        RoundLoggers(compose(synthetic_overrides(f"logging.{tracker}=true")), tmp_path, Tracker(2, None))


