"""One asynchronous run end to end through Flower simulation: offsets, blurry data, local forgetting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcl.config import compose
from simulations.run import run
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e


def test_offset_blurry_run_with_local_forgetting(tmp_path: Path) -> None:
    # Prepare: 3 clients start 0, 1 and 2 rounds late; 2 tasks x 2 rounds -> 6 rounds
    cfg = compose(synthetic_overrides(
        "quiet=true", "schedule=offsets", "schedule.offsets=[0,1,2]", "eval.local_forgetting=true",
        "stream.blurry={blurry_ratio: 0.2}", "checkpoint.enabled=false",
    ))
    # Execute
    summary = run(cfg, tmp_path / "run")
    # Assert: one metrics row per round, the number of clients the plan says, every begun task evaluated
    run_dir = tmp_path / "run"
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    plan = np.asarray(json.loads((run_dir / "schedule.json").read_text())["plan"])
    assert plan.shape == (3, 6) and [r["round"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["num_clients"] for r in rows] == list((plan >= 0).sum(axis=0))
    assert sorted(rows[2]["acc_per_task"]) == ["0", "1"]  # client 0 began task 1 at round 3
    assert summary["task_end_rounds"] == [4, 6]  # the last client (offset 2) leaves task 0 at round 4
    assert len(summary["accuracy_matrix"]) == 2 and 0.0 <= summary["acc"] <= 1.0
    dist = summary["local_forgetting_distribution"]
    assert dist["clients"] == 3 and summary["local_forgetting"] is not None
    assert summary["global_forgetting"] == summary["forgetting"]
    for name in ("schedule_timeline.png", "label_distribution.png", "local_forgetting.png"):
        assert (run_dir / name).stat().st_size > 0, name
