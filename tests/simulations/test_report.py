"""Report over a small fake grid of summary.json files: grouping, mean/std by hand, outputs."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import pytest

from simulations.report import METRICS, report


def _cfg(strategy: str, seed: int, mu: float) -> dict:
    return {"seed": seed, "strategy": {"name": strategy, "proximal_mu": mu}, "stream": {"num_tasks": 2},
            "output": {"dir": f"/somewhere/{strategy}-{seed}", "plots": True}, "resume": None, "quiet": True}


def _write_run(d: Path, cfg: dict, acc: float, fg: float, A: list[list[float]], up: int) -> dict:
    d.mkdir(parents=True)
    s = {"acc": acc, "forgetting": fg, "forgetting_max": fg, "bwt": -fg, "fwt": 0.1, "min_acc": acc - 0.1,
         "wc_acc": acc - 0.05, "wall_time_s": 10.0 + acc, "bytes_up": up, "bytes_down": 2 * up,
         "accuracy_matrix": A, "task_end_rounds": [2, 4], "config": cfg}
    (d / "summary.json").write_text(json.dumps(s))
    rows = [{"round": r, "acc_per_task": {"0": 0.5 + 0.1 * r} | ({"1": 0.2 * r} if r > 2 else {})}
            for r in range(1, 5)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    return s


@pytest.fixture
def fake_grid(tmp_path: Path) -> tuple[Path, list[dict]]:
    runs = [
        _write_run(tmp_path / "0", _cfg("fedavg", 0, 0.0), 0.70, 0.20, [[0.9, 0.0], [0.7, 0.7]], 1000),
        _write_run(tmp_path / "1", _cfg("fedavg", 1, 0.0), 0.74, 0.10, [[0.8, 0.0], [0.7, 0.78]], 1000),
        _write_run(tmp_path / "2", _cfg("fedavg", 2, 0.0), 0.78, 0.30, [[1.0, 0.0], [0.7, 0.86]], 1000),
        _write_run(tmp_path / "3", _cfg("fedprox", 0, 0.01), 0.80, 0.05, [[0.9, 0.1], [0.85, 0.75]], 3000),
    ]
    failed = tmp_path / "4"
    failed.mkdir()
    (failed / "error.txt").write_text("Traceback ...\nfedcl.errors.DataError: no IDX files in /nonexistent\n")
    return tmp_path, runs


def test_report_groups_by_config_and_matches_hand_computed_mean_std(fake_grid: tuple[Path, list[dict]]) -> None:
    # Prepare
    root, runs = fake_grid
    # Execute
    out = report(root, plots=False)
    # Assert: two configurations, differing in strategy name (mu comes with it); seed and output dir ignored
    assert out["differing_keys"] == ["strategy.name"]
    by_name = {c["values"]["strategy.name"]: c for c in out["configs"]}
    avg, prox = by_name["fedavg"], by_name["fedprox"]
    assert avg["runs"] == 3 and avg["seeds"] == [0, 1, 2] and prox["runs"] == 1
    for m in METRICS:
        vals = [r[m] for r in runs[:3]]
        assert avg["stats"][m][0] == pytest.approx(statistics.fmean(vals))
        assert avg["stats"][m][1] == pytest.approx(statistics.stdev(vals))
    assert avg["stats"]["acc"] == pytest.approx((0.74, 0.04))  # by hand: mean 0.74, sample std 0.04
    assert avg["stats"]["forgetting"] == pytest.approx((0.20, 0.10))
    assert prox["stats"]["acc"][0] == 0.80
    assert out["failed"] == [str(root / "4")]
    # CSV: one row per configuration, differing keys as columns
    rows = list(csv.DictReader(open(out["report_csv"])))
    assert len(rows) == 2
    r = next(x for x in rows if x["strategy.name"] == "fedavg")
    assert float(r["acc_mean"]) == pytest.approx(0.74) and float(r["acc_std"]) == pytest.approx(0.04)
    assert r["runs"] == "3" and "strategy.proximal_mu" not in r
    assert next(x for x in rows if x["strategy.name"] == "fedprox")["acc_std"] == ""  # one seed: no std
    md = Path(out["report_md"]).read_text()
    assert "74.00 ± 4.00" in md and "20.00 ± 10.00" in md and "DataError: no IDX files" in md


def test_report_writes_every_plot(fake_grid: tuple[Path, list[dict]]) -> None:
    root, _ = fake_grid
    out = report(root)
    names = {Path(p).name for p in out["plots"]}
    assert {"compare_acc_forgetting.png", "compare_bytes.png", "forgetting_per_task.png"} <= names
    assert sum(n.endswith("_accuracy_matrix.png") for n in names) == 2
    assert sum(n.endswith("_round_accuracy.png") for n in names) == 2
    assert all(Path(p).stat().st_size > 1000 for p in out["plots"])


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    from fedcl.errors import DataError

    with pytest.raises(DataError, match="no summary.json"):
        report(tmp_path)


def test_round_scalars_and_tensorboard_events(tmp_path: Path) -> None:
    from simulations.loggers import RoundLoggers, round_scalars

    row = {"round": 3, "acc_per_task": {"0": 0.9, "1": 0.5}, "loss_per_task": {"0": 0.3}, "mean_acc_seen": 0.7,
           "train_loss": 0.4, "bytes_up": 10, "bytes_down": 20, "epsilon": 1.5, "failures": 0}
    s = round_scalars(row, 0.1)
    assert s["acc/task_1"] == 0.5 and s["privacy/epsilon"] == 1.5 and s["forgetting/so_far"] == 0.1
    pytest.importorskip("tensorboard")
    loggers = RoundLoggers({"logging": {"tensorboard": True}}, tmp_path)
    loggers.log(row, 0.1)
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
    from simulations.loggers import RoundLoggers

    # Prepare: a fake module where the real one would be imported
    fake = _FakeTracker()
    monkeypatch.setitem(sys.modules, tracker, fake)
    cfg = {"logging": {tracker: True, "project": "proj"}, "seed": 3, "strategy": {"name": "fot"}}
    # Execute: two rounds, then close
    loggers = RoundLoggers(cfg, tmp_path)
    for rnd in (1, 2):
        loggers.log({"round": rnd, "acc_per_task": {"0": 0.5 + rnd / 10}, "train_loss": 1.0}, None)
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
    from fedcl.errors import ConfigError
    from simulations.loggers import RoundLoggers

    monkeypatch.setitem(sys.modules, tracker, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=f"logging.{tracker}"):
        RoundLoggers({"logging": {tracker: True}}, tmp_path)


def test_labels_leave_out_keys_implied_by_the_group_option_but_keep_swept_ones() -> None:
    # Prepare: fedavg vs fot (fot brings eps), and fot swept over eps
    from simulations.report import group_runs

    def run(name: str, eps: float | None) -> dict:
        strategy = {"name": name} | ({"eps": eps} if eps is not None else {})
        return {"acc": 0.5, "config": {"seed": 0, "strategy": strategy}}

    # Execute
    _, implied = group_runs([run("fedavg", None), run("fot", 0.96)])
    _, swept = group_runs([run("fedavg", None), run("fot", 0.96), run("fot", 0.9)])

    # Assert
    assert implied == ["strategy.name"]
    assert swept == ["strategy.eps", "strategy.name"]
