"""Unlearning through a real Flower simulation (SuperLink + Ray): requests served by query.unlearn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.run import run
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e


def test_fed_eraser_serves_class_and_client_requests_in_a_flower_run(tmp_path: Path) -> None:
    # Prepare: FedEraser needs the clients' individual updates (train replies carry their client id)
    # and individual calibration replies: the whole message path of unlearning through Flower
    cfg = compose(synthetic_overrides(
        "quiet=true", "unlearning=fed_eraser", "unlearning.interval=1",
        "unlearning.requests=[{round:2,kind:class,target:0},{round:3,kind:client,target:1}]",
    ))
    # Execute
    summary = run(cfg, tmp_path / "run")
    # Assert
    jobs = summary["unlearning"]["jobs"]
    assert [j["round"] for j in jobs] == [2, 3]
    cls, client = jobs
    assert cls["before"]["test_forget_acc"] > 0.9 and cls["after"]["test_forget_acc"] < 0.5
    # interval 1: a class request calibrates every stored round (1, 2); a client request all but the first (1..3)
    assert cls["rounds"] == 2 and client["rounds"] == 2
    assert client["after"]["retain_acc"] is not None and client["sizes"]["forget"] > 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["num_clients"] == 2  # client 1 left
    assert all(r["unlearn_forget_acc"] is not None for r in rows[1:])
    assert (tmp_path / "run" / "unlearning.png").stat().st_size > 0
    assert (tmp_path / "run" / "unlearning.json").exists()
