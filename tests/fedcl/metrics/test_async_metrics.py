"""Metrics under asynchrony: end-order accuracy matrix, local vs global forgetting, stream plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcl.data import Schedule
from fedcl.data.schedules import make_schedule
from fedcl.metrics import Tracker
from fedcl.metrics.local import LocalForgetting
from fedcl.metrics.stream_plots import plot_forgetting_distribution, plot_schedule_timeline


def test_tracker_reads_tasks_in_end_order() -> None:
    # Prepare: task 1 ends (round 2) before task 0 (round 3)
    tr = Tracker(2, None)
    tr.log_round(1, 1, {1: 0.5}, {1: 1.0})
    tr.log_round(2, 1, {0: 0.2, 1: 0.9}, {0: 1.0, 1: 0.1})
    tr.log_task_end(1, 2, [0.2, 0.9])
    tr.log_round(3, 1, {0: 0.8, 1: 0.6}, {0: 0.1, 1: 0.5})
    tr.log_task_end(0, 3, [0.8, 0.6])
    # Execute
    s = tr.summary()
    # Assert: rows/columns in order [1, 0]; forgetting of task 1 = 0.9 - 0.6
    assert s["task_order"] == [1, 0]
    assert s["accuracy_matrix"] == [[0.9, 0.2], [0.6, 0.8]]
    assert s["forgetting"] == pytest.approx(0.3)


def test_synchronous_order_is_identity() -> None:
    # Prepare
    tr = Tracker(2, None)
    tr.log_round(1, 0, {0: 0.9}, {0: 0.1})
    tr.log_task_end(0, 1, [0.9, 0.1])
    tr.log_round(2, 1, {0: 0.5, 1: 0.8}, {0: 0.1, 1: 0.1})
    tr.log_task_end(1, 2, [0.5, 0.8])
    # Execute
    s = tr.summary()
    # Assert
    assert s["task_order"] == [0, 1] and s["accuracy_matrix"] == [[0.9, 0.1], [0.5, 0.8]]
    assert s["forgetting"] == pytest.approx(0.4)


def test_local_forgetting_per_client_and_distribution() -> None:
    # Prepare: 2 tasks, 1 round each; client 1 joins late and only trains task 1
    sched = make_schedule({"name": "synchronous", "join_rounds": {1: 2}}, 2, 1, 2, 0)
    local = LocalForgetting(sched)
    # Execute
    local.record(1, {"client-id": 0, "acc-0": 0.9})
    local.record(2, {"client-id": 0, "acc-0": 0.4, "acc-1": 0.8})
    local.record(2, {"client-id": 1, "acc-1": 0.7})
    s = local.compare(global_forgetting=0.3)
    # Assert: client 0 forgot 0.5 on task 0; client 1 has no finished task before its last round
    assert local.per_client() == {0: pytest.approx(0.5)}
    assert s["local_forgetting"] == pytest.approx(0.5) and s["global_forgetting"] == 0.3
    assert s["local_forgetting_distribution"]["clients"] == 1


def test_stream_plots_written(tmp_path: Path) -> None:
    # Prepare
    plan = np.stack([Schedule(2, 2).plan(0), np.array([-1, 0, 0, 1])])
    # Execute
    p1 = plot_schedule_timeline(plan, {0: 3, 1: 4}, tmp_path / "t.png")
    p2 = plot_forgetting_distribution({0: 0.1, 1: 0.3}, 0.2, tmp_path / "f.png")
    # Assert
    assert p1.stat().st_size > 0 and p2.stat().st_size > 0
