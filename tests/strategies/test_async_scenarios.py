"""Asynchronous schedules combined with every scenario: class-, task- (multi-head) and domain-incremental.

In process (the production ServerApp loop and ClientApp handlers; ``tests/simulations/test_async_e2e.py``
runs one asynchronous run through Flower). Each run must finish with one metrics row per planned round,
evaluate exactly the tasks some client has begun, and fill a task x task accuracy matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcl.config import compose
from simulations.inprocess import InProcessGrid
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

SCHEDULES = {
    "offsets": ["schedule=offsets", "schedule.offsets=[0,1,2]"],
    "heterogeneous": ["schedule=heterogeneous", "schedule.order=shuffled"],
    # FOT's heterogeneous set-up: tasks in lockstep, round(0.67 * 3) = 2 of the 3 clients per task
    "heterogeneous_lockstep": ["schedule=heterogeneous", "schedule.layout=lockstep",
                               "schedule.task_fraction_per_client=0.67"],
    "reoccurrence": ["schedule=reoccurrence", "schedule.length=4"],
}


@pytest.mark.parametrize("scenario", ["class_incremental", "task_incremental", "domain_permuted"])
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedule_and_scenario_combine(tmp_path: Path, scenario: str, schedule: str) -> None:
    # Prepare: 3 clients, 2 tasks x 2 rounds (reoccurrence: 4 task visits), synthetic data
    cfg = compose(synthetic_overrides("quiet=true", "output.plots=false", "checkpoint.enabled=false",
                                      f"stream.scenario={scenario}", *SCHEDULES[schedule]))
    # Execute
    summary = run_federation(InProcessGrid(3), cfg, tmp_path)
    # Assert: every planned round ran, with the clients the plan names, on the tasks begun so far
    plan = np.asarray(json.loads((tmp_path / "schedule.json").read_text())["plan"])
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, plan.shape[1] + 1))
    assert [r["num_clients"] for r in rows] == list((plan >= 0).sum(axis=0))
    for r, row in enumerate(rows):
        begun = {int(t) for t in np.unique(plan[:, : r + 1]) if t >= 0}
        assert {int(t) for t in row["acc_per_task"]} == begun, (r + 1, row["acc_per_task"])
    A = np.asarray(summary["accuracy_matrix"])
    assert A.shape == (2, 2) and np.isfinite(A).all()
    assert summary["acc"] > 0.4  # learned something (synthetic: 2 classes per task, or 4 per domain)
