"""Same seed, same config, same numbers: real Fashion-MNIST through real Flower simulation (Ray, 2+ actors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.run import run
from tests.conftest import FMNIST_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not FMNIST_DIR.exists(), reason="Fashion-MNIST not installed")]

EXACT = ("acc", "forgetting", "forgetting_max", "bwt", "fwt", "accuracy_matrix", "initial_accuracy", "min_acc",
         "wc_acc", "stability_gap")
CASES = {
    "fedavg": [],
    "fot": ["strategy=fot"],
    "offsets_sampled_er": ["schedule=offsets", "schedule.sample_fraction=0.5", "method=er",
                           "federation.clients_per_round=2"],
}
# run b of a case: what must not change the numbers (one SuperNode per logical client instead of the default
# one per client of a round, so a node plays different logical clients from round to round)
SAME_NUMBERS = {"offsets_sampled_er": ["backend.num_supernodes=3"]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_runs_of_one_config_give_identical_summaries(case: str, tmp_path: Path) -> None:
    # Prepare: experiment=smoke, 3 clients on one-CPU actors: Ray runs 2 at once on 2 cores, in any order
    overrides = ["experiment=smoke", "seed=3", "quiet=true", "output.plots=false", "backend.client_num_cpus=1",
                 *CASES[case]]
    # Execute
    a = run(compose(overrides), tmp_path / "a")
    b = run(compose([*overrides, *SAME_NUMBERS.get(case, [])]), tmp_path / "b")
    # Assert: every metric of the summary, and every per-round accuracy, bit for bit
    for key in EXACT:
        assert a[key] == b[key], key
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == a["rounds"]
