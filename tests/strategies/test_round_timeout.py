"""A client that answers after ``federation.round_timeout_s`` counts as failed; the round goes on.

The grid below runs every client of a round in its own thread and, like Flower's
grid, hands back only the replies that arrived before the ``timeout`` the
ServerApp passed; the late ones keep running and are joined at the end. The
delays are real sleeps drawn by the ``faults`` config (``delay_prob``,
``delay_s``), so this checks the whole path: fault plan, timeout handed to the
grid, missing reply recorded as a failure, the round aggregated from the others.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from flwr.app import Context, Message, RecordDict

from fedcl import client_app
from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.faults import FaultPlan
from fedcl.methods import build_method
from strategies.round_runner import round_timeout
from strategies.server_app import run_federation
from tests.conftest import synthetic_overrides

CLIENTS, ROUNDS = 4, 4  # 2 tasks x 2 rounds
TIMEOUT_S, DELAY_S = 3.0, 6.0  # seconds of margin both ways: a warm synthetic client trains in ~0.1 s


class ThreadedGrid:
    """Runs each message in a thread; returns the replies that finished within ``timeout``."""

    def __init__(self) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
        self.contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={})
                         for n in range(1, CLIENTS + 1)}
        self.timeouts: list[float | None] = []
        self.pools: list[ThreadPoolExecutor] = []
        self.waited: list[float] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        self.timeouts.append(timeout)
        pool = ThreadPoolExecutor(max_workers=len(messages))
        self.pools.append(pool)
        futures = []
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"m{len(self.timeouts)}-{i}"
            futures.append(pool.submit(client_app.run_train, m, self.contexts[m.metadata.dst_node_id]))
        t0 = time.perf_counter()
        done, _late = wait(futures, timeout=timeout)
        self.waited.append(time.perf_counter() - t0)
        return [f.result() for f in futures if f in done]

    def join(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)


def delayed(seed: int, faults: dict[str, float]) -> set[tuple[int, int]]:
    """(round, client) pairs whose first try sleeps past the timeout."""
    return {(r, c) for r in range(1, ROUNDS + 1) for c in range(CLIENTS)
            if FaultPlan.draw(faults, seed, r, c, 0).delay_s > 0}


def test_late_clients_fail_by_timeout_and_the_round_goes_on(tmp_path: Path) -> None:
    # Prepare: a seed whose delays hit some client but never a whole round (so no retry is needed)
    faults = ["faults=crashy", "faults.crash_prob=0", "faults.nan_prob=0", "faults.delay_prob=0.25",
              f"faults.delay_s={DELAY_S}"]
    cfg = compose(synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                                      "checkpoint.enabled=false", f"federation.round_timeout_s={TIMEOUT_S}",
                                      *faults))
    seed = next(s for s in range(100) if delayed(s, cfg["faults"])
                and all(sum((r, c) in delayed(s, cfg["faults"]) for c in range(CLIENTS)) < CLIENTS
                        for r in range(1, ROUNDS + 1)))
    cfg["seed"] = seed
    late = delayed(seed, cfg["faults"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg["output"]["dir"] = str(run_dir)
    grid = ThreadedGrid()
    # a cold process (first imports, data generation) must not eat into the clients' time budget
    build_stream(cfg["stream"], CLIENTS, seed).client_data(0, 0)
    build_method(cfg["method"]["name"], cfg["method"].get("params"))
    # Execute
    t0 = time.perf_counter()
    try:
        summary = run_federation(grid, cfg, run_dir)  # type: ignore[arg-type]
    finally:
        grid.join()  # the late clients still finish (and write their state) before tmp_path goes
    elapsed = time.perf_counter() - t0
    # Assert: every round waited the configured timeout, no longer, and logged exactly the late clients
    assert round_timeout(cfg) == TIMEOUT_S
    assert grid.timeouts[:ROUNDS] == [TIMEOUT_S] * ROUNDS
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
    plan = FaultPlan.draw({"delay_prob": 1.0, "delay_s": 0.3}, seed=0, server_round=1, client_id=0)
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
    assert cfg["federation"]["round_timeout_s"] is None
    assert round_timeout(cfg) == 123.0
