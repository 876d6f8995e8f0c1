"""A run with 20% crashing clients and 10% NaN updates, through real Flower simulation (Ray).

The faulty run must finish, log exactly the injected failures in ``metrics.jsonl``
and reach the accuracy of a clean run on the surviving clients. That clean run is
replayed in this process (the production ServerApp loop ``run_federation`` and
ClientApp ``run_train``; only the transport differs), training exactly the
(round, client) pairs that survived. Every random draw of a client is seeded by
(seed, client, round), so the two runs compute the same client updates, and the
server sums them in canonical order whatever order Ray returns them in
(strategies/aggregation.py): the two runs' numbers are equal bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Message

from fedcl import keys
from fedcl.config import compose
from fedcl.config.schema import Faults
from fedcl.faults import FaultPlan
from simulations.inprocess import InProcessGrid
from simulations.run import run
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e

CLIENTS, ROUNDS = 4, 4  # 2 tasks x 2 rounds


def planned(seed: int, faults: Faults) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(round, client) pairs that crash and that send NaN, first try."""
    crash, nan = set(), set()
    for r in range(1, ROUNDS + 1):
        for c in range(CLIENTS):
            p = FaultPlan.draw(faults, seed, r, c, 0)
            if p.crash:
                crash.add((r, c))
            elif p.nan:
                nan.add((r, c))
    return crash, nan


class SurvivorsGrid(InProcessGrid):
    """Serves train messages in this process, except for the (round, client) pairs in ``drop`` (lost)."""

    def __init__(self, drop: set[tuple[int, int]]) -> None:
        super().__init__(CLIENTS)
        self.drop = drop

    def serve(self, msg: Message) -> Message | None:
        rec = msg.content[keys.CONFIG]
        assert isinstance(rec, ConfigRecord)
        if (int(rec[keys.SERVER_ROUND]), int(rec[keys.CLIENT_ID])) in self.drop:  # type: ignore[arg-type]
            return None
        return super().serve(msg)


def test_crashy_run_finishes_logs_faults_and_matches_clean_run_on_survivors(tmp_path: Path) -> None:
    # Prepare: the first seed whose faults include a crash and a NaN reply but never a whole round
    base = synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                               "backend.client_num_cpus=1")
    faults = compose([*base, "faults=crashy"]).faults
    assert faults.crash_prob == 0.2 and faults.nan_prob == 0.1
    seed = next(s for s in range(100) if all(planned(s, faults))
                and all(sum((r, c) in planned(s, faults)[0] | planned(s, faults)[1]
                            for c in range(CLIENTS)) < CLIENTS for r in range(1, ROUNDS + 1)))
    crash, nan = planned(seed, faults)
    # Execute: the faulty run through Flower, the clean run on the survivors in process
    summary = run(compose([*base, "faults=crashy", f"seed={seed}"]), tmp_path / "faulty")
    # the replay loses the failed clients' replies: the server waits federation.round_timeout_s for them
    clean = compose([*base, f"seed={seed}", f"output.dir={tmp_path / 'clean'}", "federation.round_timeout_s=1"])
    (tmp_path / "clean").mkdir()
    clean_summary = run_federation(SurvivorsGrid(crash | nan), clean, tmp_path / "clean")
    # Assert: finished, every fault logged with the right client, accuracy as the survivors' clean run
    rows = [json.loads(x) for x in (tmp_path / "faulty" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))
    for r in rows:
        assert r["failed_client_ids"] == sorted(c for rr, c in crash if rr == r["round"])
        assert r["rejected_client_ids"] == sorted(c for rr, c in nan if rr == r["round"])
        assert r["round_attempts"] == 1
    assert sum(r["failed_clients"] for r in rows) == len(crash) > 0
    assert sum(r["rejected_clients"] for r in rows) == len(nan) > 0
    assert all("NaN" in r["fault_reasons"][str(c)] for r in rows for c in r["rejected_client_ids"])
    assert all("injected crash" in r["fault_reasons"][str(c)] for r in rows for c in r["failed_client_ids"])
    # the same updates, summed in the same (canonical) order: the same numbers, bit for bit
    assert summary["acc"] == clean_summary["acc"]
    assert summary["accuracy_matrix"] == clean_summary["accuracy_matrix"]
    assert summary["acc"] > 0.5  # the model learned (4 synthetic classes: chance is 0.25)
