"""Warm grids: one simulation serves a queue of runs (the protocol, the launcher's pool, and a real Flower grid)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import fedcl
from simulations import pool
from simulations.launch import PROJECT_ROOT, flower_env
from strategies.server.jobs import done_file, job_file, serve_queue, write_atomic
from tests.conftest import FMNIST_DIR

# a stand-in for `flwr run` + ServerApp: serves the queue named by the last argument; a job's config file says
# what the job does (ok: print and write summary.json; fail: raise; die: the whole process exits)
FAKE_SERVER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from strategies.server.jobs import serve_queue

    def run_job(grid, spec):
        what = json.loads(Path(spec["config-file"]).read_text())["do"]
        print("output of", spec["run-dir"], flush=True)
        if what == "fail":
            raise ValueError("planned failure")
        if what == "die":
            os._exit(3)
        if what == "hang":  # a job that never ends and never looks at the stop file
            time.sleep(600)
        Path(spec["run-dir"], "summary.json").write_text(json.dumps({"pid": os.getpid()}))

    queue = sys.argv[-1].split("=", 1)[1].strip("'")
    serve_queue(None, Path(queue), run_job)
""")


def _fake_pool(tmp_path: Path, key: str = "k") -> pool.SimulationPool:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return pool.SimulationPool([sys.executable, "-c", FAKE_SERVER], env, key, tmp_path / "queues",
                               lambda line: False, PROJECT_ROOT)


def _job(tmp_path: Path, name: str, do: str) -> tuple[Path, Path]:
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"do": do}))
    return run_dir / "config.json", run_dir


def test_serve_queue_runs_jobs_in_order_records_failures_and_stops(tmp_path: Path) -> None:
    # Prepare: three jobs, the second raises; then the stop file
    seen: list[int] = []

    def run_job(_grid: object, spec: dict[str, str]) -> None:
        seen.append(int(spec["n"]))
        if spec["n"] == "2":
            raise ValueError("bad job")

    for n in (1, 2, 3):
        write_atomic(job_file(tmp_path, n), {"n": str(n)})
    (tmp_path / "stop").touch()
    # Execute
    served = serve_queue(None, tmp_path, run_job)  # type: ignore[arg-type]
    # Assert: all three in order, the failure recorded with its cause, the others ok
    assert seen == [1, 2, 3] and served == 3
    status = [json.loads(done_file(tmp_path, n).read_text()) for n in (1, 2, 3)]
    assert [s["status"] for s in status] == ["ok", "failed", "ok"]
    assert status[1]["error"] == "ValueError: bad job"


def test_serve_queue_ends_when_its_owner_is_gone(tmp_path: Path) -> None:
    # Prepare: an owner pid that no longer exists (a finished child)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "owner").write_text(child.stdout.strip())
    # Execute / Assert: returns instead of waiting forever
    assert serve_queue(None, tmp_path, lambda g, s: None) == 0  # type: ignore[arg-type]


def test_pool_runs_jobs_in_one_process_and_survives_a_failed_job(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    # Prepare
    sim = _fake_pool(tmp_path)
    jobs = [_job(tmp_path, name, do) for name, do in (("a", "ok"), ("b", "fail"), ("c", "ok"))]
    try:
        # Execute
        status = [sim.submit(cfg, run_dir, limit=60) for cfg, run_dir in jobs]
    finally:
        sim.stop()
    # Assert: one server process ran every job; the failure is the job's, not the pool's; output passed on in order
    assert [s["status"] for s in status] == ["ok", "failed", "ok"] and "planned failure" in status[1]["error"]
    pids = {json.loads((tmp_path / n / "summary.json").read_text())["pid"] for n in ("a", "c")}
    assert len(pids) == 1
    out = capfd.readouterr().out
    assert out.index(f"output of {tmp_path / 'a'}") < out.index(f"output of {tmp_path / 'c'}")
    assert not sim.alive() and not sim.queue.exists()


def test_pool_reports_a_server_that_died(tmp_path: Path) -> None:
    sim = _fake_pool(tmp_path)
    cfg, run_dir = _job(tmp_path, "a", "die")
    try:
        with pytest.raises(pool.LaunchError, match="ended"):
            sim.submit(cfg, run_dir, limit=60)
    finally:
        sim.stop()


def test_pool_stop_kills_a_server_that_does_not_stop_by_its_pid(tmp_path: Path) -> None:
    # Prepare: a job that hangs past its limit
    sim = _fake_pool(tmp_path)
    cfg, run_dir = _job(tmp_path, "a", "hang")
    with pytest.raises(TimeoutError, match="did not finish"):
        sim.submit(cfg, run_dir, limit=1)
    # Execute: the stop file is ignored, so stop() must kill the process it started
    sim.stop(timeout=1)
    # Assert: that pid is gone (reaped), the queue folder removed
    assert not sim.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(sim.proc.pid, 0)
    assert not sim.queue.exists()


def test_warm_keeps_one_pool_per_key_and_a_run_that_cannot_share_gets_its_own(tmp_path: Path) -> None:
    # Prepare: pools that start nothing
    started: list[pool.SimulationPool] = []

    def start(key: str) -> pool.SimulationPool:
        sim = _fake_pool(tmp_path, key)
        started.append(sim)
        return sim

    # Execute: inside warm(), two shareable runs with one key, one with another key, one that cannot share
    with pool.warm():
        a = pool.pool_for("k1", True, lambda: start("k1"))
        kept_a = pool.keep_warm(True)
        b = pool.pool_for("k1", True, lambda: start("k1"))
        c = pool.pool_for("k2", True, lambda: start("k2"))
        d = pool.pool_for("k2", False, lambda: start("k2"))
        kept_d = pool.keep_warm(False)
    # Assert
    assert a is b and kept_a  # warm: the same simulation
    assert c is not a and not a.alive()  # another federation config: the old one stopped
    assert d is not c and not kept_d  # a run that cannot share gets a fresh one, stopped after it
    assert len(started) == 3 and pool._POOL is None and not pool.keep_warm(True)


def test_what_may_share_a_simulation() -> None:
    base = ["stream=synthetic", "federation.num_clients=3"]
    assert pool.shareable(fedcl.compose(base))
    assert not pool.shareable(fedcl.compose([*base, "federation.state_store=context"]))
    assert not pool.shareable(fedcl.compose([*base, "faults=crashy", "faults.delay_prob=0.5"]))


EXACT = ("acc", "forgetting", "forgetting_max", "bwt", "fwt", "accuracy_matrix", "initial_accuracy", "min_acc",
         "wc_acc", "stability_gap")
SMOKE = ["experiment=smoke", "quiet=true", "output.plots=false", "checkpoint.enabled=false", "method=er",
         "faults=crashy", "faults.nan_prob=0"]


def _marked(marker: bytes) -> set[int]:
    """Processes whose environment holds ``marker`` (this test's private RAY_TMPDIR): only those this test started."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (d / "environ").read_bytes():
                    out.add(int(d.name))
    return out


def _left_behind(marker: bytes, wait_s: float = 20.0) -> set[int]:
    """What still runs ``wait_s`` after the launchers ended (Ray's daemons take a few seconds to go)."""
    deadline = time.monotonic() + wait_s
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_a_warm_hydra_grid_gives_the_numbers_of_cold_runs_survives_failed_jobs_and_leaves_nothing(
        tmp_path: Path) -> None:
    # Prepare: a short private Ray folder (Ray's socket paths must stay under 108 bytes) that marks our processes;
    # the grid: seed 0, 1, 0 x a job that works and one whose clients all crash (the ServerApp fails it)
    ray_tmp = Path(tempfile.mkdtemp(prefix="h23r", dir="/tmp"))
    marker = f"RAY_TMPDIR={ray_tmp}".encode()
    env = {**flower_env(), "RAY_TMPDIR": str(ray_tmp)}
    sweep = tmp_path / "grid"
    grid_cmd = [sys.executable, "-m", "simulations.run", "-m", *SMOKE, "seed=0,1,0", "faults.crash_prob=0,1",
                f"hydra.sweep.dir={sweep}"]
    cold_cmd = [sys.executable, "-m", "simulations.run", *SMOKE, "seed=1", "faults.crash_prob=0",
                f"output.dir={tmp_path / 'cold1'}"]
    try:
        # Execute: the grid on one warm simulation, then seed 1 as a cold Flower run, then in process
        grid_proc = subprocess.run(grid_cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
        sessions = sorted((ray_tmp / "ray").glob("session_2*"))
        cold_proc = subprocess.run(cold_cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
        left = _left_behind(marker)
        separate = [fedcl.run(fedcl.compose([*SMOKE, f"seed={s}", "faults.crash_prob=0", "backend=inprocess"]),
                              tmp_path / f"sep{s}") for s in (0, 1)]
    finally:
        for pid in _marked(marker):  # only if the test failed: never leave a process of ours behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # Assert: one Ray instance for the whole grid, nothing left running once the launchers ended
    assert grid_proc.returncode == 0, grid_proc.stdout[-3000:] + grid_proc.stderr[-3000:]
    assert cold_proc.returncode == 0, cold_proc.stdout[-3000:] + cold_proc.stderr[-3000:]
    assert len(sessions) == 1, sessions
    assert not left, left
    # every crashing job failed on its own; every working job after it has its summary
    jobs = {j["num"]: j for j in json.loads((sweep / "grid.json").read_text())["jobs"]}
    assert [jobs[n]["status"] for n in range(6)] == ["ok", "failed"] * 3
    assert "RoundError" in jobs[1]["error"]
    grid = {n: json.loads((sweep / str(n) / "summary.json").read_text()) for n in (0, 2, 4)}
    cold = json.loads((tmp_path / "cold1" / "summary.json").read_text())
    # every warm job equals the cold Flower run and the in-process run; the repeated job its twin
    for key in EXACT:
        assert grid[0][key] == separate[0][key] == grid[4][key], key
        assert grid[2][key] == cold[key] == separate[1][key], key
    assert grid[0]["acc"] != grid[2]["acc"]
