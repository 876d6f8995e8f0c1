"""Client state stores: memory budget and memory-mapped disk loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.app import Context, RecordDict

from fedcl.errors import DataError
from fedcl.state import ContextStore, DiskStore, open_store


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def state(mb: float) -> dict:
    return {"method": {"buffer": torch.arange(int(mb * 2**20 / 4), dtype=torch.float32)}, "seen_tasks": [0]}


def test_disk_store_round_trip_is_exact(tmp_path: Path) -> None:
    # Prepare
    store = open_store("disk", context(), str(tmp_path), budget_mb=4)
    saved = state(1.0)
    # Execute
    store.save(3, saved)
    loaded = store.load(3)
    # Assert
    assert isinstance(store, DiskStore)
    assert torch.equal(loaded["method"]["buffer"], saved["method"]["buffer"])
    assert loaded["seen_tasks"] == [0]
    loaded["method"]["buffer"][0] = -1.0  # memory-mapped copy-on-write: the file keeps its value
    assert float(store.load(3)["method"]["buffer"][0]) == 0.0


def test_disk_store_refuses_a_state_over_the_budget(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, budget_mb=1)
    with pytest.raises(DataError, match="state_memory_mb"):
        store.save(0, state(1.5))


def test_context_store_refuses_to_grow_past_the_budget() -> None:
    # Prepare: 2 MiB budget, 0.8 MiB per client
    store = ContextStore(context(), budget_mb=2)
    store.save(0, state(0.8))
    store.save(1, state(0.8))
    store.save(1, state(0.8))  # replacing a client's own state does not count it twice
    # Execute / Assert
    with pytest.raises(DataError, match="state_store=disk"):
        store.save(2, state(0.8))
