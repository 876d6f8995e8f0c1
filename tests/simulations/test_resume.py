"""Kill a run after its first checkpoint, resume it, and get the uninterrupted run's metrics exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from fedcl.config import compose
from simulations.launch import PROJECT_ROOT
from simulations.run import run
from tests.conftest import FMNIST_DIR, synthetic_overrides

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# in process (the launcher is the whole run); the Flower path is killed and resumed in the FOT + ER test below
OVERRIDES = synthetic_overrides("stream.num_tasks=3", "train.local_epochs=3", "quiet=true", "backend=inprocess")
EXACT = ("acc", "forgetting", "forgetting_max", "bwt", "accuracy_matrix", "min_acc", "wc_acc", "stability_gap")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _marked(marker: bytes) -> set[int]:
    """Processes whose environment holds ``marker`` (this test's private RAY_TMPDIR): only ours."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "environ").read_bytes():
                    out.add(int(d.name))
            except OSError:
                continue
    return out


def _kill_all(pids: set[int]) -> None:
    # freeze first so nothing respawns or reparents between the snapshot and the kill
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass


def _accs(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(x)["acc_per_task"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _env(marker_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_TMPDIR"] = marker_dir  # short: Ray's socket paths live under it
    env["FLWR_HOME"] = os.path.join(marker_dir, "flwr")
    return env


def kill_then_resume(overrides: list[str], run_dir: Path) -> tuple[int, dict[str, Any]]:
    """Run ``overrides`` as ``python -m simulations.run`` in a subprocess, SIGKILL it and everything it started
    right after its first checkpoint, resume it with ``resume=<run folder>`` in a new process; return the round it
    was killed after and the resumed run's summary. Nothing of either process may be left running."""
    marker_dir = tempfile.mkdtemp(prefix="fr", dir="/tmp")
    marker = f"RAY_TMPDIR={marker_dir}".encode()
    env = _env(marker_dir)
    proc = subprocess.Popen([sys.executable, "-m", "simulations.run", *overrides, f"output.dir={run_dir}"],
                            cwd=PROJECT_ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, "the run exited before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
        _kill_all({proc.pid} | _descendants(proc.pid) | _marked(marker))
        proc.wait(timeout=30)
        for _ in range(50):
            left = _marked(marker)
            if not left:
                break
            _kill_all(left)
            time.sleep(0.2)
        assert not _marked(marker), "processes of the killed run survived"
        assert not (run_dir / "summary.json").exists(), "the run finished before it was killed; slow it down"
        killed_at = int((run_dir / "checkpoints" / "latest").read_text().split("-")[1].split(".")[0])
        res = subprocess.run([sys.executable, "-m", "simulations.run", f"resume={run_dir}"], cwd=PROJECT_ROOT,
                             env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        time.sleep(1.0)
        assert not _marked(marker), "the resumed run left processes running"
        return killed_at, json.loads((run_dir / "summary.json").read_text())
    finally:
        _kill_all(_marked(marker) | ({proc.pid} if proc.poll() is None else set()))


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    # Prepare: the uninterrupted reference run
    ref = run(compose(OVERRIDES), tmp_path / "ref")
    run_dir = tmp_path / "killed"
    # Execute: SIGKILL the launcher and everything it started right after the task-0 checkpoint, then resume
    killed_at, resumed = kill_then_resume(OVERRIDES, run_dir)
    # Assert: same metrics as the uninterrupted run, one row per round
    assert resumed["resumed_from_round"] == killed_at >= 2
    for key in EXACT:
        assert resumed[key] == ref[key], key
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, 7))
    assert _accs(run_dir) == _accs(tmp_path / "ref")


@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_run_killed_mid_task_resumes_bit_exact_with_fot_and_replay(tmp_path: Path) -> None:
    # Prepare: FOT (server state: bases) + ER (client state: buffers) on Fashion-MNIST, a checkpoint every round
    overrides = ["experiment=smoke", "strategy=fot", "method=er", "federation.rounds_per_task=3",
                 "checkpoint.every_rounds=1", "quiet=true", "output.plots=false"]
    ref = run(compose(overrides), tmp_path / "ref")
    run_dir = tmp_path / "killed"
    # Execute: SIGKILL everything right after the first checkpoint (round 1: the middle of task 0), then resume
    killed_at, resumed = kill_then_resume(overrides, run_dir)
    # Assert: killed mid-task; the uninterrupted run's numbers, bit for bit, and the same bases
    assert killed_at % 3 != 0, f"killed at round {killed_at}, a task boundary: not mid-task"
    assert resumed["resumed_from_round"] == killed_at
    for key in EXACT:
        assert resumed[key] == ref[key], key
    assert _accs(run_dir) == _accs(tmp_path / "ref")
    bases = torch.load(run_dir / "final.pt", weights_only=False)["strategy"]["fot"]["bases"]
    ref_bases = torch.load(tmp_path / "ref" / "final.pt", weights_only=False)["strategy"]["fot"]["bases"]
    assert bases.keys() == ref_bases.keys() and all((bases[k] == ref_bases[k]).all() for k in bases)
