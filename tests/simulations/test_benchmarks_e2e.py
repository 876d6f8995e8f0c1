"""The FOT paper experiments end to end, two rounds per task through Flower, on files written in the published formats.

The three experiment files run with their own stream, model and FOT settings; only the scale is cut
(2 clients, 2 tasks, 2 rounds, small sketches, narrower networks where that keeps the layer structure).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.run import run
from tests.fedcl.data.formats import write_cifar, write_five_datasets, write_mini_imagenet_npy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = ["federation.num_clients=2", "federation.clients_per_round=null", "federation.rounds_per_task=2",
         "stream.num_tasks=2", "eval.subset_size=20", "strategy.sketch_factor=1", "strategy.gpse_max_samples=40",
         "device=cpu", "quiet=true", "checkpoint.enabled=false", "output.plots=false"]


def _check(summary: dict, tasks: int = 2) -> None:
    assert summary["acc"] is not None and 0.0 <= summary["acc"] <= 1.0
    dims = summary["strategy_state"]["basis_dims"]
    assert dims and all(k >= 1 for k in dims.values()), "GPSE grew no basis"


def test_fot_cifar100_paper(tmp_path: Path) -> None:
    write_cifar(tmp_path / "data", "cifar100", n_train=400, n_test=100)
    cfg = compose([*SMALL, f"stream.data_dir={tmp_path / 'data'}", "model.hidden=64"], "fot_cifar100_paper")
    _check(run(cfg, tmp_path / "run"))


def test_fot_5datasets_paper(tmp_path: Path) -> None:
    write_five_datasets(tmp_path / "data")
    cfg = compose([*SMALL, f"stream.data_dir={tmp_path / 'data'}", "model.nf=4"], "fot_5datasets_paper")
    _check(run(cfg, tmp_path / "run"))


def test_fot_miniimagenet_paper(tmp_path: Path) -> None:
    write_mini_imagenet_npy(tmp_path / "data", n_train=80, n_test=20)
    cfg = compose([*SMALL, f"stream.data_dir={tmp_path / 'data'}", "model.nf=4"], "fot_miniimagenet_paper")
    _check(run(cfg, tmp_path / "run"))
