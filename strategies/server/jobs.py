"""A queue of runs served by one ServerApp: the server half of warm grids (``simulations/pool.py``).

A Hydra grid used to start a SuperLink, a ``flwr run``, a simulation runtime, a Ray
instance and its client actors for every job. With the run-config key ``job-queue`` set
to a folder, the ServerApp instead serves every run the launcher drops into that folder,
one after the other, on the same grid: the client actors (and the data, imports and
caches they hold) are reused, because a message carries its whole run config
(:mod:`fedcl.client.instruction`) and nothing a client keeps in its process depends on
the run but caches of pure functions of the config.

The protocol (files, so it needs no extra network service): the launcher writes
``job-<n>.json`` (``{"config-file": ..., "run-dir": ...}``, ``n`` = 1, 2, ...,
written to a temporary name and renamed); the ServerApp runs job ``n`` and writes
``done-<n>.json`` (``{"status": "ok" | "failed", "error": <last line>}``) and prints
:data:`DONE_MARKER` followed by ``n``; ``stop`` (or the death of the process whose pid
is in ``owner``) ends the queue and so the Flower run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.serverapp import Grid

QUEUE_KEY = "job-queue"  # run-config key: the queue folder
DONE_MARKER = "fedcl-job-done"
POLL_S = 0.02

RunJob = Callable[[Grid, dict[str, Any]], None]


def job_file(queue: Path, n: int) -> Path:
    return queue / f"job-{n}.json"


def done_file(queue: Path, n: int) -> Path:
    return queue / f"done-{n}.json"


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary name and rename it: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def owner_alive(queue: Path) -> bool:
    """Whether the launcher that owns the queue still runs (no ``owner`` file: assume it does)."""
    try:
        pid = int((queue / "owner").read_text())
    except (OSError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve_queue(grid: Grid, queue: Path, run_job: RunJob) -> int:
    """Run the queue's jobs in order until ``stop`` or the owner's death; return the number of jobs served.

    A job that raises is recorded as failed (``done-<n>.json``; ``run_job`` leaves the traceback
    in the run folder) and the queue goes on, as a Hydra grid goes on after a failed job.
    """
    n = 1
    while True:
        path = job_file(queue, n)
        if path.exists():
            status: dict[str, Any] = {"status": "ok", "error": None}
            try:
                run_job(grid, json.loads(path.read_text()))
            except Exception as exc:  # noqa: BLE001 - one job's failure is its own; the queue serves the next
                lines = traceback.format_exception_only(exc)
                status = {"status": "failed", "error": lines[-1].strip() if lines else repr(exc)}
            write_atomic(done_file(queue, n), status)
            print(f"{DONE_MARKER} {n}", flush=True)
            n += 1
            continue
        if (queue / "stop").exists() or not owner_alive(queue):
            return n - 1
        time.sleep(POLL_S)
