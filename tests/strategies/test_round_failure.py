"""A round that stays below federation.min_replies stops the run; the last checkpoint stays sound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedcl.checkpoint import latest_checkpoint, load_checkpoint
from fedcl.config import compose
from fedcl.errors import RoundError
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides
from tests.simulations.test_faults_e2e import CLIENTS, SurvivorsGrid


def test_round_error_leaves_last_checkpoint_valid(tmp_path: Path) -> None:
    # Prepare: every client of round 3 (first round of task 1) is lost, on both tries
    cfg = compose(synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                                      "federation.round_retries=1", f"output.dir={tmp_path / 'run'}",
                                      "federation.round_timeout_s=1"))  # lost replies: the server waits 1 s
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    grid = SurvivorsGrid({(3, c) for c in range(CLIENTS)})
    # Execute
    with pytest.raises(RoundError, match="round 3: only 0 of 4") as info:
        run_federation(grid, cfg, run_dir)
    # Assert: the checkpoint of round 2 (end of task 0) is the newest, loadable and finite
    assert "resume=" in str(info.value)
    path = latest_checkpoint(run_dir)
    assert path is not None and path.name.startswith("round-2")
    state = load_checkpoint(path)
    assert int(state["round"]) == 2
    assert all(torch.isfinite(v).all() for v in state["arrays"].values())
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # the failed round wrote nothing
