"""FOT forgets much less than FedAvg on a small Permuted Fashion-MNIST stream.

In process (`backend=inprocess`: the same round loop and ClientApp as a Flower simulation, same numbers, a
minute less in CI); FOT through real Flower is covered by the determinism, resume and privacy end-to-end tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.run import run
from tests.conftest import FMNIST_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# experiment=demo_pmnist: 3 permutations, 3 clients, 3 rounds per task, lr 0.1
SMALL_PERMUTED = ["experiment=demo_pmnist", "device=cpu", "quiet=true", "backend=inprocess"]


@pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")
def test_fot_forgets_less_than_fedavg_same_seed(tmp_path: Path) -> None:
    # Prepare / Execute: the same stream, seed and clients; only the strategy differs
    fedavg = run(compose([*SMALL_PERMUTED, "strategy=fedavg"]), tmp_path / "fedavg")
    fot = run(compose([*SMALL_PERMUTED, "strategy=fot"]), tmp_path / "fot")
    # Assert (measured with make run, 2026-11-30: FedAvg forgetting 2.08 points, FOT 0.42; ACC 84.12 vs 84.86)
    assert fedavg["forgetting"] > 0.01
    assert fot["forgetting"] < 0.5 * fedavg["forgetting"]
    assert fot["acc"] >= fedavg["acc"] - 0.01
    assert fot["strategy_state"]["basis_dims"], "GPSE grew no basis"
