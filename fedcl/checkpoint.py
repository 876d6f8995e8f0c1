"""Run checkpoints: the server's whole state at the end of a round, written atomically.

Layout under ``<run_dir>/checkpoints/``::

    round-<r>.pt          global arrays, strategy state, tracker state, round, RNG states
    round-<r>.clients/    copy of <run_dir>/client_state/client-*.pt as they were after round r
    latest                text file naming the newest complete checkpoint ("round-<r>.pt")

Write order is client copy, then ``round-<r>.pt``, then ``latest``; each step is a
temporary name plus ``os.replace``, so a process killed at any point leaves
``latest`` naming a checkpoint whose every part is complete.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcl.config.schema import Checkpoint
from fedcl.errors import ConfigError, DataError

CKPT_DIR = "checkpoints"
CLIENT_DIR = "client_state"
LATEST = "latest"


def due(policy: Checkpoint, server_round: int, task_ended: bool) -> bool:
    """Whether to checkpoint after ``server_round`` under ``policy`` (the ``checkpoint`` config section)."""
    if not policy.enabled:
        return False
    return task_ended or (policy.every_rounds > 0 and server_round % policy.every_rounds == 0)


def rng_state() -> dict[str, Any]:
    """The server process's Python, NumPy and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, server_round: int, payload: dict[str, Any], keep: int = 0) -> Path:
    """Write ``round-<r>.pt`` (``payload`` + the client states) and point ``latest`` at it.

    Parameters
    ----------
    run_dir : Path
        The run folder (client states are read from ``run_dir/client_state``).
    server_round : int
        The round just completed.
    payload : dict
        Server state (arrays, strategy, tracker, RNG...), saved with ``torch.save``.
    keep : int
        Newest checkpoints kept afterwards (0: all).

    Returns
    -------
    Path
        The checkpoint file.
    """
    ckpt_dir = run_dir / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"round-{server_round}"
    # client states first: the .pt (and then `latest`) only appear once the copy is complete
    clients = ckpt_dir / f"{name}.clients"
    tmp_clients = ckpt_dir / f".{name}.clients.tmp{os.getpid()}"
    shutil.rmtree(tmp_clients, ignore_errors=True)
    tmp_clients.mkdir()
    src = run_dir / CLIENT_DIR
    if src.is_dir():
        for f in sorted(src.glob("client-*.pt")):
            shutil.copy2(f, tmp_clients / f.name)
    shutil.rmtree(clients, ignore_errors=True)
    os.replace(tmp_clients, clients)
    path = ckpt_dir / f"{name}.pt"
    tmp = ckpt_dir / f".{name}.pt.tmp{os.getpid()}"
    torch.save({**payload, "round": int(server_round)}, tmp)
    os.replace(tmp, path)
    _atomic_bytes(ckpt_dir / LATEST, f"{name}.pt\n".encode())
    if keep > 0:
        _prune(ckpt_dir, keep)
    return path


def _round_of(path: Path) -> int:
    return int(path.name.split("-", 1)[1].split(".", 1)[0])


def _prune(ckpt_dir: Path, keep: int) -> None:
    done = sorted(ckpt_dir.glob("round-*.pt"), key=_round_of)
    for old in done[:-keep]:
        old.unlink(missing_ok=True)
        shutil.rmtree(old.with_suffix(".clients"), ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, or ``None`` when the run has none."""
    pointer = run_dir / CKPT_DIR / LATEST
    if not pointer.exists():
        return None
    path = run_dir / CKPT_DIR / pointer.read_text().strip()
    if not path.exists():
        raise DataError(f"{pointer} names {path.name}, which is missing; delete {pointer.parent} to start over")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The payload of a checkpoint file (with its ``round``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt checkpoint
        raise DataError(f"checkpoint {path} is unreadable ({exc})") from exc
    assert isinstance(state, dict)
    return state


def restore_client_states(path: Path, run_dir: Path) -> int:
    """Make ``run_dir/client_state`` exactly the checkpoint's copy; return the number of files.

    Files of clients first seen after the checkpoint are removed, so every client
    starts the resumed round with the state it had at the checkpointed round.
    """
    src = path.with_suffix(".clients")
    if not src.is_dir():
        raise DataError(f"checkpoint {path} has no client-state copy {src}")
    dst = run_dir / CLIENT_DIR
    dst.mkdir(parents=True, exist_ok=True)
    for f in dst.iterdir():
        if f.is_file():
            f.unlink()
    n = 0
    for f in sorted(src.glob("client-*.pt")):
        shutil.copy2(f, dst / f.name)
        n += 1
    return n


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config of an existing run folder, with ``resume`` pointing at it.

    Raises
    ------
    ConfigError
        When ``run_dir`` holds no ``config.json`` / ``config.yaml`` (not a run folder).
    """
    import json

    import yaml

    run_dir = Path(run_dir).resolve()
    if (run_dir / "config.json").exists():
        cfg = json.loads((run_dir / "config.json").read_text())
    elif (run_dir / "config.yaml").exists():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    else:
        raise ConfigError("resume", str(run_dir), "a run folder holding config.json or config.yaml")
    assert isinstance(cfg, dict)
    cfg["resume"] = str(run_dir)
    cfg.setdefault("output", {})["dir"] = str(run_dir)
    return cfg
