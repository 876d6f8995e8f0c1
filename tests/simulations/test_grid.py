"""Grids: a job that fails at run time is recorded and the others still run; index and grid.json."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from simulations import grid
from simulations.launch import PROJECT_ROOT
from simulations.progress import job_line
from tests.conftest import synthetic_overrides


def test_sweep_shape_counts_the_product_of_swept_values() -> None:
    total, keys = grid.sweep_shape(["-m", "strategy=fedavg,fedprox,fot", "seed=0,1", "quiet=true"])
    assert total == 6 and keys == ["strategy", "seed"]


def test_index_grid_json_and_all_failed_status(tmp_path: Path) -> None:
    # Prepare: two failed jobs, recorded out of order
    grid.record_job(tmp_path, {"num": 1, "status": "failed", "label": ["seed=1"], "run_dir": "/r/1", "error": "boom"})
    grid.record_job(tmp_path, {"num": 0, "status": "failed", "label": ["seed=0"], "run_dir": "/r/0", "error": "boom"})
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    # Execute
    grid.LAST_GRID.clear()
    grid.GridCallback().on_multirun_end(cfg)
    # Assert: grid.json by job number; every job failed -> the CLI will exit 1
    g = json.loads((tmp_path / "grid.json").read_text())
    assert [j["num"] for j in g["jobs"]] == [0, 1] and g["failed"] == 2 and g["ok"] == 0
    assert grid.LAST_GRID == {"ok": 0, "failed": 2}
    assert "FAILED (boom) -> /r/0/error.txt" in grid.format_grid(g)


def test_job_line() -> None:
    line = job_line(2, 8, ["strategy=fot", "seed=1"], {"acc": 0.81, "forgetting": 0.05}, 42.0)
    assert line == "[job 3/8] strategy=fot seed=1 | ACC 0.810 forgetting 0.050 (42 s)"
    assert "FAILED: DataError: x" in job_line(0, None, [], None, 3.0, error="Traceback\nDataError: x")


@pytest.mark.e2e
@pytest.mark.slow
def test_grid_records_a_run_time_failure_and_runs_the_other_job(tmp_path: Path) -> None:
    # Prepare: job 0 synthetic (fine), job 1 reads IDX files from a folder that does not exist;
    # the config is valid, so only the run itself fails
    sweep = tmp_path / "grid"
    cmd = [sys.executable, "-m", "simulations.run", "-m", *synthetic_overrides("quiet=true"),
           "stream.dataset=synthetic,mnist_format", "stream.data_dir=/nonexistent", f"hydra.sweep.dir={sweep}"]
    # Execute
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    # Assert: exit 0 (one job succeeded), the failure in its folder and in the index
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    g = json.loads((sweep / "grid.json").read_text())
    status = {j["num"]: j["status"] for j in g["jobs"]}
    assert status == {0: "ok", 1: "failed"}
    failed = next(j for j in g["jobs"] if j["status"] == "failed")
    assert failed["label"] == ["stream.dataset=mnist_format"]
    err = (Path(failed["run_dir"]) / "error.txt").read_text()
    assert "/nonexistent" in err
    assert (Path(g["jobs"][0]["run_dir"]) / "summary.json").exists()
    assert "[job 2/2] stream.dataset=mnist_format | FAILED" in proc.stderr
    assert "1 ok, 1 failed" in proc.stdout
    assert (sweep / "report.md").exists() and (sweep / "report.csv").exists()


def test_parallel_grid_with_the_joblib_launcher(tmp_path: Path) -> None:
    # Prepare / Execute / Assert: two seeds as two parallel jobs (hydra-joblib-launcher, the `grid-local` extra),
    # each with its own SuperLink and Ray
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    _two_seed_grid(tmp_path / "grid", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], timeout=600)


def test_grid_with_the_submitit_launcher_in_local_mode(tmp_path: Path) -> None:
    # Prepare: two seeds as two submitit jobs, run as local subprocesses (the Slurm launcher's loopback mode)
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "grid"
    # Execute / Assert: both jobs ran in submitit's own processes, recorded in the grid index
    proc = _two_seed_grid(sweep, ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                                  "backend=inprocess"], timeout=900)  # the launcher is the point, not Flower
    assert list((sweep / ".submitit").glob("*/*_0_log.out"))  # submitit's per-job logs: it ran the jobs
    assert "2 ok, 0 failed" in proc.stdout


def _two_seed_grid(sweep: Path, launcher: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run seeds 0 and 1 of the synthetic run as a grid with ``launcher``; check the jobs, index and report."""
    cmd = [sys.executable, "-m", "simulations.run", "-m", *synthetic_overrides("quiet=true"), *launcher,
           "seed=0,1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    g = json.loads((sweep / "grid.json").read_text())
    assert sorted(j["status"] for j in g["jobs"]) == ["ok", "ok"]
    summaries = [json.loads((Path(j["run_dir"]) / "summary.json").read_text()) for j in g["jobs"]]
    assert {s["config"]["seed"] for s in summaries} == {0, 1}
    assert len((sweep / "index.jsonl").read_text().splitlines()) == 2
    _report_matches_the_runs(sweep, summaries)
    return proc


def _report_matches_the_runs(sweep: Path, summaries: list[dict]) -> None:
    """The grid's report: one configuration (only the seed differs), mean and sample std of the runs."""
    rows = list(csv.DictReader(open(sweep / "report.csv")))
    assert len(rows) == 1 and rows[0]["runs"] == str(len(summaries))
    for m in ("acc", "forgetting", "bwt"):
        vals = [s[m] for s in summaries]
        assert float(rows[0][f"{m}_mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-6), m
        assert float(rows[0][f"{m}_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-6), m
