"""Warm grids: one simulation serves a queue of runs (the protocol, the launcher's pool, and a real Flower grid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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
    import json, os, sys
    from pathlib import Path
    from strategies.server.jobs import serve_queue

    def run_job(grid, spec):
        what = json.loads(Path(spec["config-file"]).read_text())["do"]
        print("output of", spec["run-dir"], flush=True)
        if what == "fail":
            raise ValueError("planned failure")
        if what == "die":
            os._exit(3)
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


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_a_hydra_grid_runs_on_one_simulation_with_the_numbers_of_separate_runs(tmp_path: Path) -> None:
    # Prepare: seed 0, seed 1 (method ER: a client state on disk), seed 0 again, on a private Ray folder
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    env = {**flower_env(), "RAY_TMPDIR": str(ray_tmp)}
    sweep = tmp_path / "grid"
    cmd = [sys.executable, "-m", "simulations.run", "-m", "experiment=smoke", "quiet=true", "output.plots=false",
           "checkpoint.enabled=false", "seed=0,1,0", "method=er", f"hydra.sweep.dir={sweep}"]
    # Execute: the grid through Flower, then each job's config as a separate in-process run
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    grid = [json.loads((sweep / str(n) / "summary.json").read_text()) for n in range(3)]
    separate = [fedcl.run(fedcl.compose(["experiment=smoke", "quiet=true", "output.plots=false", "method=er",
                                         "checkpoint.enabled=false", f"seed={s}", "backend=inprocess"]),
                          tmp_path / f"sep{s}") for s in (0, 1)]
    # Assert: one Ray instance for the whole grid; every job equals its separate run, the repeated job its twin
    sessions = list((ray_tmp / "ray").glob("session_2*"))
    assert len(sessions) == 1, sessions
    for key in EXACT:
        assert grid[0][key] == separate[0][key] == grid[2][key], key
        assert grid[1][key] == separate[1][key], key
    assert grid[0]["acc"] != grid[1]["acc"]
