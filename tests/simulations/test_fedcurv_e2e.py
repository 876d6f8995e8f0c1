"""FedCurv through real Flower simulation: Fisher sums cross the server, state size is logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedcl.config import compose
from simulations.run import run
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e


def test_fedcurv_round_trips_fisher_sums_and_logs_state_bytes(tmp_path: Path) -> None:
    # Prepare: 3 synthetic clients, 2 tasks x 2 rounds
    cfg = compose(synthetic_overrides("method=fedcurv", "method.fedcurv.fisher_samples=16", "quiet=true",
                                      "output.plots=false"))
    # Execute
    summary = run(cfg, tmp_path / "run")
    # Assert: every round's clients hold their own (u_i, v_i): 2 x the model's float32 parameters
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=False)
    n_params = sum(v.numel() for k, v in final["arrays"].items())
    assert all(row["state_bytes"] == row["state_bytes_max"] == 2 * 4 * n_params for row in rows)
    assert summary["state_bytes_max"] == summary["state_bytes_mean"] == 2 * 4 * n_params
    # the server kept only the sums of the last round, over all 3 clients, and sent them down every round after 1
    sums = final["strategy"]["extra_sums"]
    assert sums["round"] == len(rows) and sums["clients"] == 3
    assert all(row["bytes_down"] > rows[0]["bytes_down"] for row in rows[1:])
