"""A client that answers after ``federation.round_timeout_s`` counts as failed; the round goes on.

The grid below runs every client of a round in its own thread; the server's grid
(:class:`~strategies.server.grid.RunGrid`) polls it and hands back only the replies
that arrived before the round's timeout; the late ones keep running and are joined
at the end. The
delays are real sleeps drawn by the ``faults`` config (``delay_prob``,
``delay_s``), so this checks the whole path: fault plan, timeout handed to the
grid, missing reply recorded as a failure, the round aggregated from the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flwr.app import Message

from fedcl.config import compose
from fedcl.config.schema import Faults
from fedcl.data import build_stream
from fedcl.faults import FaultPlan
from fedcl.methods import build_method
from simulations.inprocess import InProcessGrid
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides
from tests.strategies.helpers import make_strategy

CLIENTS, ROUNDS = 4, 4  # 2 tasks x 2 rounds
TIMEOUT_S, DELAY_S = 3.0, 6.0  # seconds of margin both ways: a warm synthetic client trains in ~0.1 s


class ThreadedGrid(InProcessGrid):
    """Serves each pushed message in its own thread; a pull returns the replies finished so far."""

    def __init__(self) -> None:
        super().__init__(CLIENTS)
        self.pools: list[ThreadPoolExecutor] = []
        self.futures: dict[str, Future[Message | None]] = {}

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        pool = ThreadPoolExecutor(max_workers=max(len(messages), 1))
        self.pools.append(pool)
        ids = []
        for m in messages:
            self._next_id += 1
            m.metadata.__dict__["_message_id"] = f"threaded-{self._next_id}"
            ids.append(m.metadata.message_id)
            self.futures[m.metadata.message_id] = pool.submit(self.serve, m)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        done = [i for i in message_ids if i in self.futures and self.futures[i].done()]
        return [r for r in (self.futures.pop(i).result() for i in done) if r is not None]

    def join(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)


def delayed(seed: int, faults: Faults) -> set[tuple[int, int]]:
    """(round, client) pairs whose first try sleeps past the timeout."""
    return {(r, c) for r in range(1, ROUNDS + 1) for c in range(CLIENTS)
            if FaultPlan.draw(faults, seed, r, c, 0).delay_s > 0}


def test_late_clients_fail_by_timeout_and_the_round_goes_on(tmp_path: Path) -> None:
    # Prepare: a seed whose delays hit some client but never a whole round (so no retry is needed)
    faults = ["faults=crashy", "faults.crash_prob=0", "faults.nan_prob=0", "faults.delay_prob=0.25",
              f"faults.delay_s={DELAY_S}"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    over = synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                               "checkpoint.enabled=false", f"federation.round_timeout_s={TIMEOUT_S}",
                               f"output.dir={run_dir}", *faults)
    cfg = compose(over)
    seed = next(s for s in range(100) if delayed(s, cfg.faults)
                and all(sum((r, c) in delayed(s, cfg.faults) for c in range(CLIENTS)) < CLIENTS
                        for r in range(1, ROUNDS + 1)))
    cfg = compose([*over, f"seed={seed}"])
    late = delayed(seed, cfg.faults)
    grid = ThreadedGrid()
    # a cold process (first imports, data generation) must not eat into the clients' time budget
    build_stream(cfg.stream, CLIENTS, seed).client_data(0, 0)
    build_method(cfg.method)
    # Execute
    t0 = time.perf_counter()
    try:
        summary = run_federation(grid, cfg, run_dir)
    finally:
        grid.join()  # the late clients still finish (and write their state) before tmp_path goes
    elapsed = time.perf_counter() - t0
    # Assert: every round waited the configured timeout, no longer, and logged exactly the late clients
    assert make_strategy(*over).reply_timeout_s == TIMEOUT_S
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))
    for r in rows:
        assert r["failed_client_ids"] == sorted(c for rr, c in late if rr == r["round"]), (r, grid.waited)
        assert r["rejected_client_ids"] == []
        assert r["round_attempts"] == 1
        assert all("timed out" in r["fault_reasons"][str(c)] for c in r["failed_client_ids"])
    rounds_with_late = len({rr for rr, _ in late})
    assert elapsed >= rounds_with_late * TIMEOUT_S  # the server did wait for them
    assert summary["acc"] > 0.5  # the survivors trained the model (4 synthetic classes: chance 0.25)


def test_delay_fault_sleeps_before_training() -> None:
    # Prepare: a plan that always delays
    plan = FaultPlan.draw(Faults(name="slow", crash_prob=0.0, nan_prob=0.0, delay_prob=1.0, delay_s=0.3),
                          seed=0, server_round=1, client_id=0)
    # Execute
    t0 = time.perf_counter()
    plan.before_train(client_id=0, server_round=1)
    # Assert
    assert plan.delay_s == 0.3 and not plan.crash and not plan.nan
    assert time.perf_counter() - t0 >= 0.3


def test_round_timeout_defaults_to_backend_timeout() -> None:
    # Prepare: no federation.round_timeout_s -> backend.timeout_s
    cfg = compose(synthetic_overrides("backend.timeout_s=123"))
    # Execute / Assert
    assert cfg.federation.round_timeout_s is None
    assert make_strategy("backend.timeout_s=123").reply_timeout_s == 123.0
