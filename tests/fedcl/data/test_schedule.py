"""Synchronous client schedule: rounds to tasks, task boundaries, seen tasks."""

from __future__ import annotations

import pytest

from fedcl.data import Schedule, make_schedule
from fedcl.errors import ConfigError


def test_task_at_and_task_round() -> None:
    # Prepare
    sched = Schedule(num_tasks=3, rounds_per_task=2, num_clients=5)
    # Execute
    tasks = [sched.task_at(r, 0) for r in range(1, 8)]
    within = [sched.task_round(r, 4) for r in range(1, 7)]
    # Assert
    assert sched.total_rounds == 6
    assert tasks == [0, 0, 1, 1, 2, 2, None]
    assert within == [0, 1, 0, 1, 0, 1]


def test_last_round_of_task() -> None:
    # Prepare
    sched = Schedule(num_tasks=2, rounds_per_task=3, num_clients=2)
    # Execute
    last = [sched.is_last_round_of_task(r, 1) for r in range(1, 7)]
    # Assert
    assert last == [False, False, True, False, False, True]


def test_end_rounds_global_and_seen() -> None:
    # Prepare
    sched = make_schedule({"name": "synchronous"}, num_tasks=3, rounds_per_task=4, num_clients=5, seed=0)
    # Execute
    ends = [sched.task_end_round(t) for t in range(3)]
    # Assert
    assert ends == [4, 8, 12]
    assert sched.global_task(1) == 0 and sched.global_task(5) == 1 and sched.global_task(12) == 2
    assert sched.seen_tasks(4) == [0] and sched.seen_tasks(9) == [0, 1, 2]


def test_bad_inputs() -> None:
    # Prepare
    sched = Schedule(2, 2)
    # Execute / Assert
    with pytest.raises(ConfigError, match="server_round"):
        sched.task_round(0, 0)
    with pytest.raises(ConfigError, match="task_id"):
        sched.task_end_round(2)
    with pytest.raises(ConfigError, match="client_id"):
        sched.task_at(1, 1)  # one client: client 1 does not exist
    with pytest.raises(ConfigError, match="federation.rounds_per_task"):
        make_schedule({"name": "synchronous"}, 2, 0, 2, 0)
    with pytest.raises(ConfigError, match="schedule.name"):
        make_schedule({"name": "blurry"}, 2, 1, 2, 0)
