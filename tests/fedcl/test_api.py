"""The Python API: ``fedcl.compose`` gives a typed config, ``fedcl.run`` a summary; both engines agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fedcl
from simulations.launch import PROJECT_ROOT, flower_env
from tests.conftest import FMNIST_DIR

EXACT = ("acc", "forgetting", "forgetting_max", "bwt", "fwt", "accuracy_matrix", "initial_accuracy", "min_acc",
         "wc_acc", "stability_gap")


def test_compose_gives_a_typed_config_and_run_a_summary(tmp_path: Path) -> None:
    # Prepare
    cfg = fedcl.compose(["stream=synthetic", "federation.num_clients=3", "federation.rounds_per_task=2",
                         "backend=inprocess", "quiet=true", "output.plots=false", "method=[er,ewc]"])
    # Execute
    summary = fedcl.run(cfg, tmp_path / "run")
    # Assert: typed fields, the run folder, the summary of that run
    assert isinstance(cfg, fedcl.Config) and cfg.federation.num_clients == 3 and cfg.method_names == ["er", "ewc"]
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds"] == 4 and len(summary["accuracy_matrix"]) == 2 and 0.0 <= summary["acc"] <= 1.0


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_the_readme_one_liner_runs_through_flower_and_inprocess_gives_the_same_numbers(tmp_path: Path) -> None:
    # Prepare: the README's one-liner, from an empty folder (outputs go to ./runs/<timestamp>)
    env = {**flower_env(), "PYTHONPATH": str(PROJECT_ROOT)}
    code = ("import fedcl, json; s = fedcl.run(fedcl.compose(['experiment=smoke', 'quiet=true'])); "
            "print('SUMMARY', json.dumps(s))")
    # Execute: the Flower simulation (backend=local, the default), then the in-process engine
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    inprocess = fedcl.run(fedcl.compose(["experiment=smoke", "quiet=true", "backend=inprocess"]), tmp_path / "ip")
    # Assert: it ran, wrote its folder, and the two engines agree bit for bit
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    flower = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("SUMMARY "))[len("SUMMARY "):])
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == 1
    for key in EXACT:
        assert flower[key] == inprocess[key], key
    assert os.path.exists(tmp_path / "ip" / "metrics.jsonl")
