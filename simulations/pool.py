"""Warm simulations: one Flower simulation serves a grid's runs one after the other (issue 23, warm grids).

Starting a run through Flower costs a ``flwr run`` CLI, a simulation runtime process, a
Ray instance with its daemons and client actors that each import torch and load the
data: ~20 s on an idle 2-core machine, 90 % of an ``experiment=smoke`` run, paid again
by every job of a Hydra grid. A :class:`SimulationPool` is one such Flower run whose
ServerApp serves a queue of runs (:mod:`strategies.server.jobs`): the launcher drops a
job (resolved config file + run folder) into the queue and waits for it; the runtime,
Ray and the actors stay up between jobs.

Results are those of separate runs: every message carries its run's whole config, every
random draw is seeded per (run seed, client, round), the server builds each run from
scratch, and client processes keep nothing between messages but caches of pure functions
of the config (the stream, materialised slices). Two kinds of run keep state outside
that and get a simulation of their own (:func:`shareable`): ``federation.state_store=context``
(client states in the node's ``context.state``, which lives as long as the Flower run) and
runs with injected delays (a late client of one run would still be busy in the next).

The pool lives while :func:`warm` is entered (``python -m simulations.run -m``, or
``with fedcl.warm():`` in a notebook); outside it every run gets its own pool, stopped
when the run ends, exactly the old one-run-one-simulation behaviour.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedcl.config import Config
from fedcl.errors import FedCLError
from strategies.server.jobs import DONE_MARKER, done_file, job_file, write_atomic

OUTPUT_GRACE_S = 3.0  # how long a finished job waits for its last output lines (Flower streams logs every 0.5 s)


class LaunchError(FedCLError, RuntimeError):
    """The Flower simulation could not be started or failed."""


def shareable(cfg: Config) -> bool:
    """Whether a run may share its simulation with other runs (see the module docstring for the two that may not)."""
    return cfg.federation.state_store == "disk" and cfg.faults.delay_prob == 0


class SimulationPool:
    """One ``flwr run`` whose ServerApp runs the jobs it is given, one after the other.

    Parameters
    ----------
    cmd : list[str]
        The ``flwr run ... --stream`` command without its ``--run-config`` (the pool adds ``job-queue``).
    env : dict[str, str]
        Its environment (the SuperLink's).
    key : str
        What a job must share to run here (the federation config); another key needs another pool.
    queue_root : Path
        Where the queue folder is made.
    is_noise : callable
        Output lines of Flower's not worth passing on.
    cwd : Path
        Working folder of ``flwr run`` (the project).
    """

    def __init__(self, cmd: list[str], env: dict[str, str], key: str, queue_root: Path,
                 is_noise: Callable[[str], bool], cwd: Path) -> None:
        self.key, self.is_noise = key, is_noise
        queue_root.mkdir(parents=True, exist_ok=True)
        self.queue = Path(tempfile.mkdtemp(prefix="queue-", dir=queue_root))
        (self.queue / "owner").write_text(str(os.getpid()))
        full = [*cmd, "--run-config", f"job-queue='{self.queue}'"]
        self.proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.submitted = 0
        self._printed = 0
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._forward, daemon=True)
        self._reader.start()

    def _forward(self) -> None:
        """Pass the run's output through (without Flower's noise); note each job's end marker."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if DONE_MARKER in line:
                tail = line.split(DONE_MARKER, 1)[1].split()
                with self._cond:
                    self._printed = max(self._printed, int(tail[0]) if tail and tail[0].isdigit() else 0)
                    self._cond.notify_all()
            elif not self.is_noise(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, config_file: Path, run_dir: Path, limit: float) -> dict[str, Any]:
        """Run one job and wait for it (at most ``limit`` seconds); its status (``ok`` / ``failed`` + error)."""
        self.submitted += 1
        n = self.submitted
        write_atomic(job_file(self.queue, n), {"config-file": str(config_file), "run-dir": str(run_dir)})
        deadline = time.monotonic() + limit
        done = done_file(self.queue, n)
        while not done.exists():
            if self.proc.poll() is not None:
                raise LaunchError(f"the Flower simulation ended (exit {self.proc.returncode}) before finishing "
                                  f"{run_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the run did not finish within {limit:.0f} s")
            time.sleep(0.02)
        with self._cond:  # its last lines (the accuracy table) before the caller prints anything
            self._cond.wait_for(lambda: self._printed >= n or self._eof, timeout=OUTPUT_GRACE_S)
        status: dict[str, Any] = json.loads(done.read_text())
        return status

    def stop(self, timeout: float = 60.0) -> None:
        """Let the ServerApp return (``stop``), wait for the Flower run to end, remove the queue."""
        with contextlib.suppress(OSError):
            (self.queue / "stop").touch()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        shutil.rmtree(self.queue, ignore_errors=True)


_POOL: SimulationPool | None = None
_WARM = 0


@contextlib.contextmanager
def warm() -> Iterator[None]:
    """Keep one simulation up across the runs inside the block (stopped at its end)."""
    global _WARM
    _WARM += 1
    try:
        yield
    finally:
        _WARM -= 1
        if _WARM == 0:
            close()


def close() -> None:
    """Stop the pool, if one runs."""
    global _POOL
    if _POOL is not None:
        pool, _POOL = _POOL, None
        pool.stop()


def pool_for(key: str, shared: bool, start: Callable[[], SimulationPool]) -> SimulationPool:
    """The running pool if it serves ``key`` and the run may share it, else a fresh one (the old one stopped)."""
    global _POOL
    if _POOL is not None and (not _POOL.alive() or _POOL.key != key or not shared):
        close()
    if _POOL is None:
        _POOL = start()
        atexit.register(close)  # before the SuperLink's own stop (atexit runs last-registered first)
    return _POOL


def keep_warm(shared: bool) -> bool:
    """Whether the pool stays up after a run: inside :func:`warm`, for a run that may share it."""
    return _WARM > 0 and shared
