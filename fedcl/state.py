"""Client state between rounds: a method's ``state_dict()`` plus the client's task history.

Flower rebuilds the ClientApp's objects for every message, so whatever a client
must remember goes through a store:

* ``disk`` (default): one file per (run, client) under a state folder. Works for
  logical clients served by any SuperNode / Ray actor on the same machine, or on
  a shared filesystem reachable by every worker; memory stays flat however many
  clients the run has.
* ``context``: Flower's ``context.state`` of the node (kept by the SuperNode in
  deployment, shipped to the Ray actor with every message in simulation). Only
  correct when each logical client is always served by the same node, one
  message at a time (deployment with one client per SuperNode).

Memory budget (``federation.state_memory_mb``): the disk store holds one
client's state per message in flight, loaded memory-mapped (its tensors are
file pages the kernel can drop, not process memory), so a process's memory
does not grow with the number of clients; a single state above the budget is
refused with a clear error. The context store keeps every client's state of
the node in memory (and Flower copies it with each message): it refuses to
grow past the budget and names the disk store as the fix.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context

from fedcl.errors import DataError

_CTX_KEY = "fedcl-client-state"


def _dumps(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _loads(blob: bytes | Path, where: str) -> dict[str, Any]:
    try:
        # a path loads memory-mapped: tensors stay file-backed pages until the method copies what it keeps
        src = str(blob) if isinstance(blob, Path) else io.BytesIO(blob)
        state = torch.load(src, map_location="cpu", weights_only=False, mmap=isinstance(blob, Path))
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt store
        raise DataError(f"client state {where} is corrupt ({exc}); delete it to restart that client") from exc
    assert isinstance(state, dict)
    return state


class DiskStore:
    """Client states as files ``<root>/client-<id>.pt``, written atomically.

    Parameters
    ----------
    root : str | Path
        Folder holding one file per client (created on first save).
    budget_mb : int, default 256
        Largest single client state (MiB) this store accepts.
    """

    def __init__(self, root: str | Path, budget_mb: int = 256) -> None:
        self.root = Path(root)
        self.budget = budget_mb * 2**20

    def _path(self, client_id: int) -> Path:
        return self.root / f"client-{client_id}.pt"

    def load(self, client_id: int) -> dict[str, Any]:
        path = self._path(client_id)
        if not path.exists():
            return {}
        return _loads(path, str(path))

    def save(self, client_id: int, state: dict[str, Any]) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        blob = _dumps(state)
        _check_budget(len(blob), self.budget, f"client {client_id}'s state")
        tmp = self._path(client_id).with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(blob)
        # rename is atomic: a client killed mid-write never leaves a torn state file
        os.replace(tmp, self._path(client_id))
        return len(blob)


class ContextStore:
    """Client states inside the node's ``context.state`` (one entry per logical client).

    Parameters
    ----------
    context : flwr.app.Context
        The node context Flower hands to the ClientApp.
    budget_mb : int, default 256
        Most bytes (MiB) of client state the node's ``context.state`` may hold.
    """

    def __init__(self, context: Context, budget_mb: int = 256) -> None:
        self.context = context
        self.budget = budget_mb * 2**20

    def load(self, client_id: int) -> dict[str, Any]:
        rec = self.context.state.config_records.get(_CTX_KEY)
        if rec is None or str(client_id) not in rec:
            return {}
        blob = rec[str(client_id)]
        assert isinstance(blob, bytes)
        return _loads(blob, f"context.state[{client_id}]")

    def save(self, client_id: int, state: dict[str, Any]) -> int:
        rec = self.context.state.config_records.get(_CTX_KEY) or ConfigRecord()
        blob = _dumps(state)
        others = sum(len(v) for k, v in rec.items() if k != str(client_id) and isinstance(v, bytes))
        _check_budget(others + len(blob), self.budget, "the client states in this node's context.state")
        rec[str(client_id)] = blob
        self.context.state[_CTX_KEY] = rec
        return len(blob)


def _check_budget(nbytes: int, budget: int, what: str) -> None:
    if nbytes > budget:
        raise DataError(
            f"{what} need {nbytes / 2**20:.1f} MiB, over federation.state_memory_mb={budget / 2**20:.0f}: raise "
            "the budget, or use federation.state_store=disk (one state in memory at a time)"
        )


def open_store(
    kind: str, context: Context, state_dir: str | None, budget_mb: int = 256
) -> DiskStore | ContextStore:
    """The store named by ``kind`` (``disk`` needs ``state_dir``); ``budget_mb``: ``federation.state_memory_mb``."""
    if kind == "context":
        return ContextStore(context, budget_mb)
    node_root = context.node_config.get("state-dir")
    # a node-level folder outlives runs: scope it by run so a new run never loads an old run's state
    root = str(Path(str(node_root)) / str(context.run_id)) if node_root else state_dir
    if not root:
        raise DataError("the disk state store needs a folder: set node-config 'state-dir' or output.dir")
    return DiskStore(str(root), budget_mb)
