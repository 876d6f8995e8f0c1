"""Checkpoint files: atomic layout, latest pointer, pruning, client-state restore, policy keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedcl.checkpoint import (
    due,
    latest_checkpoint,
    load_checkpoint,
    restore_client_states,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fedcl.config import compose
from fedcl.config.schema import Checkpoint
from fedcl.errors import ConfigError
from tests.conftest import synthetic_overrides


def test_save_load_prune_and_restore_client_states(tmp_path: Path) -> None:
    # Prepare: two clients' states after round 2
    cs = tmp_path / "client_state"
    cs.mkdir()
    (cs / "client-0.pt").write_bytes(b"zero@2")
    (cs / "client-1.pt").write_bytes(b"one@2")
    # Execute: checkpoints at rounds 2, 4, 6 with keep=2
    save_checkpoint(tmp_path, 2, {"x": torch.ones(2)}, keep=2)
    (cs / "client-0.pt").write_bytes(b"zero@4")
    save_checkpoint(tmp_path, 4, {"x": torch.zeros(2)}, keep=2)
    (cs / "client-2.pt").write_bytes(b"two@6")
    save_checkpoint(tmp_path, 6, {"x": torch.full((2,), 6.0)}, keep=2)
    # Assert: latest is round 6, round 2 pruned
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "round-6.pt"
    assert load_checkpoint(latest)["round"] == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("round-*")) == [
        "round-4.clients", "round-4.pt", "round-6.clients", "round-6.pt"]
    # restoring round 4 removes the client first seen later and rolls back the others
    (cs / "client-1.pt").write_bytes(b"one@7")
    assert restore_client_states(tmp_path / "checkpoints" / "round-4.pt", tmp_path) == 2
    assert {p.name: p.read_bytes() for p in cs.iterdir()} == {"client-0.pt": b"zero@4", "client-1.pt": b"one@2"}


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None


def test_rng_round_trip() -> None:
    state = rng_state()
    a = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def test_policy_due_and_validation() -> None:
    p = Checkpoint(enabled=True, every_rounds=3, keep=0)
    assert [r for r in range(1, 8) if due(p, r, task_ended=(r == 4))] == [3, 4, 6]
    assert not due(Checkpoint(enabled=False, every_rounds=0, keep=2), 4, True)
    with pytest.raises(ConfigError, match="checkpoint.every_rounds"):
        compose(synthetic_overrides("checkpoint.every_rounds=-1"))
