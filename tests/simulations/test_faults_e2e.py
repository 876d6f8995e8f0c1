"""A run with 20% crashing clients and 10% NaN updates, through real Flower simulation (Ray).

The faulty run must finish, log exactly the injected failures in ``metrics.jsonl``
and reach the accuracy of a clean run on the surviving clients. That clean run is
replayed in this process (the production ServerApp loop ``run_federation`` and
ClientApp ``run_train``; only the transport differs), training exactly the
(round, client) pairs that survived. Every random draw of a client is seeded by
(seed, client, round), so the two runs compute the same client updates; the only
difference is the order in which Ray returns the replies, which changes float32
summation order in the average (~1e-7 relative). Tolerance: 0.01 absolute
accuracy, far above that rounding noise and far below what a single NaN taken
into the model (accuracy at chance) or a lost client would cost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedcl import client_app, keys
from fedcl.config import compose
from fedcl.faults import FaultPlan
from simulations.run import run
from strategies.server_app import run_federation
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e

CLIENTS, ROUNDS = 4, 4  # 2 tasks x 2 rounds


def planned(seed: int, faults: dict[str, Any]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
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


class SurvivorsGrid:
    """Answers train messages in this process, except for the (round, client) pairs in ``drop``."""

    def __init__(self, drop: set[tuple[int, int]]) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
        self.drop = drop
        self.contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={})
                         for n in range(1, CLIENTS + 1)}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"m{i}"
            rec = m.content[keys.CONFIG]
            assert isinstance(rec, ConfigRecord)
            if (int(rec[keys.SERVER_ROUND]), int(rec[keys.CLIENT_ID])) not in self.drop:  # type: ignore[arg-type]
                replies.append(client_app.run_train(m, self.contexts[m.metadata.dst_node_id]))
        return replies


def test_crashy_run_finishes_logs_faults_and_matches_clean_run_on_survivors(tmp_path: Path) -> None:
    # Prepare: the first seed whose faults include a crash and a NaN reply but never a whole round
    base = synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                               "backend.client_num_cpus=1")
    faulty = compose([*base, "faults=crashy"])
    assert faulty["faults"]["crash_prob"] == 0.2 and faulty["faults"]["nan_prob"] == 0.1
    seed = next(s for s in range(100) if all(planned(s, faulty["faults"]))
                and all(sum((r, c) in planned(s, faulty["faults"])[0] | planned(s, faulty["faults"])[1]
                            for c in range(CLIENTS)) < CLIENTS for r in range(1, ROUNDS + 1)))
    faulty["seed"] = seed
    crash, nan = planned(seed, faulty["faults"])
    # Execute: the faulty run through Flower, the clean run on the survivors in process
    summary = run(faulty, tmp_path / "faulty")
    clean = compose([*base, f"seed={seed}"])
    clean["output"]["dir"] = str(tmp_path / "clean")
    (tmp_path / "clean").mkdir()
    clean_summary = run_federation(SurvivorsGrid(crash | nan), clean, tmp_path / "clean")  # type: ignore[arg-type]
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
    assert abs(summary["acc"] - clean_summary["acc"]) <= 0.01, (summary["acc"], clean_summary["acc"])
    for a, b in zip(summary["accuracy_matrix"], clean_summary["accuracy_matrix"], strict=True):
        assert all(abs(x - y) <= 0.01 for x, y in zip(a, b, strict=True))
    assert summary["acc"] > 0.5  # the model learned (4 synthetic classes: chance is 0.25)
