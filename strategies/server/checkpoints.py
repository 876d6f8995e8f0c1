"""Checkpoints of a run (a round hook) and the resume that continues a killed run from the newest one."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from fedcl.checkpoint import (
    CKPT_DIR,
    CLIENT_DIR,
    due,
    latest_checkpoint,
    load_checkpoint,
    restore_client_states,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fedcl.config import Config
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.records import array_record


class Checkpoints(RoundHook):
    """After the last round of each task (and every ``checkpoint.every_rounds``), save the whole server state.

    Registered last, so every other part has finished its round when its state is taken.

    Parameters
    ----------
    cfg : Config
        The run config (``checkpoint``: ``enabled``, ``every_rounds``, ``keep``).
    run_dir : Path
        The run folder.
    snapshot : Callable[[], dict[str, Any]]
        The server state of the round just finished (weights, strategy, tracker, hooks, time).
    """

    name = "checkpoints"

    def __init__(self, cfg: Config, run_dir: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.policy, self.run_dir, self.snapshot = cfg.checkpoint, run_dir, snapshot

    def on_row(self, server_round: int, row: dict[str, Any], ended: list[int]) -> None:
        if due(self.policy, server_round, bool(ended)):
            save_checkpoint(self.run_dir, server_round, {**self.snapshot(), "rng": rng_state()}, keep=self.policy.keep)


def fresh_run_dir(run_dir: Path) -> None:
    """Remove a previous run's per-round outputs from ``run_dir``.

    Left in place, its client states would silently seed this run's clients and
    its ``metrics.jsonl`` would be appended to.
    """
    for name in (CLIENT_DIR, CKPT_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)


def resume(cfg: Config, run_dir: Path) -> tuple[int, ArrayRecord, dict[str, Any]]:
    """Restore the client states and RNG of the newest checkpoint; return (first round to run, arrays, state).

    ``state`` holds the strategy's, the tracker's and every hook's state for the caller
    to load, and ``elapsed_s``; ``metrics.jsonl`` is cut back to the checkpointed rows.
    """
    if cfg.federation.state_store != "disk":
        raise ConfigError("resume", cfg.resume, "needs federation.state_store=disk (context.state dies with the "
                          "SuperNodes, so client states cannot be restored)")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise ConfigError("resume", cfg.resume, f"no checkpoint in {run_dir / CKPT_DIR}; start a new run instead")
    state = load_checkpoint(path)
    set_rng_state(state["rng"])
    restore_client_states(path, run_dir)
    # metrics.jsonl may hold rounds after the checkpoint: rewrite it to the checkpointed rows
    tmp = run_dir / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in state["tracker"]["rows"]))
    os.replace(tmp, run_dir / "metrics.jsonl")
    (run_dir / "summary.json").unlink(missing_ok=True)
    return int(state["round"]) + 1, array_record(state["arrays"]), state
