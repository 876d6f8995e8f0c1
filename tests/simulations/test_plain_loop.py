"""The overhead benchmark's plain loop computes what the Flower run computes (no Ray: in-process grid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.benchmarks.plain_loop import plain_federation
from simulations.run import run
from tests.conftest import synthetic_overrides


@pytest.mark.parametrize("extra", [[], ["federation.num_clients=4", "federation.clients_per_round=2"]])
def test_plain_loop_matches_the_server_app_round_loop(tmp_path: Path, extra: list[str]) -> None:
    # Prepare
    overrides = synthetic_overrides("quiet=true", "output.plots=false", "checkpoint.enabled=false",
                                    "backend=inprocess", "backend.num_supernodes=2", *extra)
    # Execute
    plain = plain_federation(compose(overrides))
    flower = run(compose(overrides), tmp_path)
    # Assert: same client training, averaging and evaluation -> the same numbers
    assert plain["accuracy_matrix"] == flower["accuracy_matrix"]
    for key in ("acc", "forgetting", "bwt", "min_acc", "wc_acc"):
        assert plain[key] == flower[key], key
