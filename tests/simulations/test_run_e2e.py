"""End to end through real Flower simulation (own SuperLink + Ray), stopped after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedcl.config import compose
from fedcl.errors import DataError
from simulations.launch import CONNECTION, PROJECT_ROOT, flower_env, superlink
from simulations.run import run
from tests.conftest import FMNIST_DIR, synthetic_overrides

pytestmark = pytest.mark.e2e

SUMMARY_KEYS = {
    "acc", "forgetting", "forgetting_max", "bwt", "fwt", "min_acc", "wc_acc", "stability_gap",
    "accuracy_matrix", "rounds", "wall_time_s", "bytes_up", "bytes_down", "config",
}


@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_smoke_run_on_fashion_mnist_writes_run_folder(tmp_path: Path) -> None:
    # Prepare
    cfg = compose(["experiment=smoke", "quiet=true"])
    # Execute
    summary = run(cfg, tmp_path / "run")
    # Assert: the run folder holds every output
    run_dir = tmp_path / "run"
    for name in ("config.yaml", "config.json", "metrics.jsonl", "summary.json", "accuracy_matrix.png",
                 "round_accuracy.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert SUMMARY_KEYS <= set(summary)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in lines] == [1, 2, 3, 4]
    assert all(row["bytes_up"] > 0 and row["bytes_down"] > 0 for row in lines)
    assert summary["rounds"] == 4 and len(summary["accuracy_matrix"]) == 2
    # naive fine-tuning on class-incremental Split Fashion-MNIST forgets task 0 almost entirely
    a = summary["accuracy_matrix"]
    assert a[0][0] > 0.8
    assert summary["forgetting"] > 0.5


def test_same_seed_same_metrics_with_parallel_clients(tmp_path: Path) -> None:
    # Prepare: 3 clients on 2 one-CPU actors -> clients run concurrently, in any order
    cfg = compose(synthetic_overrides("quiet=true", "backend.client_num_cpus=1"))
    # Execute
    s1 = run(cfg, tmp_path / "a")
    s2 = run(compose(synthetic_overrides("quiet=true", "backend.client_num_cpus=1")), tmp_path / "b")
    # Assert
    for key in ("acc", "forgetting", "bwt", "accuracy_matrix", "min_acc", "wc_acc"):
        assert s1[key] == s2[key], key
    assert 0.0 <= s1["acc"] <= 1.0


def test_flwr_run_composes_experiment_and_overrides(tmp_path: Path) -> None:
    # Prepare: the `flwr run . -c` path (the ServerApp composes the config itself)
    link = superlink(flower_env())
    run_dir = tmp_path / "flwr"
    overrides = " ".join(o for o in synthetic_overrides("quiet=true") if not o.startswith("federation.num_clients"))
    # Execute: common keys directly in --run-config (hyphens for underscores), the rest as Hydra overrides
    proc = subprocess.run(
        ["flwr", "run", str(PROJECT_ROOT), CONNECTION, "--stream", "--federation-config", "num-supernodes=3",
         "--run-config", f"seed=3 method='[er,ewc]' federation.num-clients=3 overrides='{overrides}' "
                         f"run-dir='{run_dir}'"],
        env=link.env, cwd=PROJECT_ROOT, timeout=600, capture_output=True, text=True,
    )
    # Assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["seed"] == 3 and summary["config"]["stream"]["dataset"] == "synthetic"
    assert list(summary["config"]["method"]) == ["er", "ewc"] and summary["config"]["federation"]["num_clients"] == 3


def test_bad_group_option_fails_fast_with_one_clear_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simulations.run", "method=nope"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "method" in proc.stderr and "naive" in proc.stderr


def test_missing_data_fails_before_any_flower_process_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a run pointed at an empty data folder; starting Flower would be a bug
    import simulations.launch

    def no_flower(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Flower was started although the data is missing")

    monkeypatch.setattr(simulations.launch, "run_flower", no_flower)
    cfg = compose(["experiment=smoke", f"stream.data_dir={tmp_path / 'empty'}"])

    # Execute / Assert: the data error names the folder
    with pytest.raises(DataError, match="empty"):
        run(cfg, tmp_path / "run")
