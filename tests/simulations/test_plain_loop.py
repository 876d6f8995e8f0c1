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


def test_parallel_plain_loop_gives_the_single_process_numbers_and_stops_its_workers() -> None:
    # Prepare: 4 clients, 2 sampled per round (so a worker may get none), er (client state kept in the worker)
    import torch

    from simulations.benchmarks.plain_parallel import WorkerPool

    cfg = compose(synthetic_overrides("quiet=true", "federation.num_clients=4", "federation.clients_per_round=2",
                                      "method=er"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same float sums
    try:
        # Execute
        single = plain_federation(cfg)
        pool = WorkerPool(cfg, workers=2)
        try:
            parallel = plain_federation(cfg, train_round=pool.train_round)
        finally:
            pool.close()
    finally:
        torch.set_num_threads(threads)
    # Assert
    assert parallel["accuracy_matrix"] == single["accuracy_matrix"]
    for key in ("acc", "forgetting", "bwt", "min_acc", "wc_acc"):
        assert parallel[key] == single[key], key
    assert all(not p.is_alive() and p.exitcode == 0 for p in pool.procs)
