"""``strategy=analytic`` through the real round loop and ClientApp (in process): exact after every task.

Each run: a synthetic stream (4 classes of 1x8x8 blobs, 2 tasks unless said), an MLP body of width 32
trained by FedAvg in the base rounds and then frozen, a relu expansion to d_e = 96, gamma = 1. The
reference is an independent QR least-squares ridge solve on the union of every (client, task) share
the server's ledger holds, through the checkpointed frozen backbone (``helpers.ledger_oracle``): no
Gram matrix, no Cholesky, no message.

Tolerance: relative Frobenius error of W below ``RTOL = 1e-10`` (measured 1e-15 .. 1e-14); the
accuracy matrix equals the centralised head's, entry for entry; reply orders give bit-identical W.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from fedcl.analytic import install_head
from fedcl.analytic.head import HEAD_WEIGHT
from fedcl.trainer import evaluate
from tests.fedcl.analytic.helpers import checkpoint, ledger_oracle, rel_err, run_analytic, run_stream
from tests.strategies.test_order_independence import ShuffledGrid

RTOL = 1e-10


def _assert_exact_at_every_task_end(run_dir: Path, summary: dict, overrides: tuple[str, ...]) -> list[float]:
    """W after every task = the centralised ridge on the ledger's data; returns the errors."""
    stream = run_stream(overrides)
    errors = []
    for r in summary["task_end_rounds"]:
        ck = checkpoint(run_dir, r)
        ledger = ck["strategy"]["analytic"]["ledger"]
        w_cen, _, _ = ledger_oracle(ck["arrays"], stream, ledger)
        errors.append(rel_err(ck["arrays"][HEAD_WEIGHT][0], w_cen))
    assert max(errors) < RTOL, errors
    return errors


@pytest.mark.parametrize(("partition", "clients"), [("iid", 3), ("shards", 4), ("dirichlet", 5)])
def test_federated_head_equals_centralised_ridge_after_every_task(tmp_path: Path, partition: str,
                                                                  clients: int) -> None:
    # Prepare
    over = (f"stream.partition={partition}", f"federation.num_clients={clients}", "stream.num_tasks=3",
            "strategy.base_rounds=1")
    # Execute
    summary = run_analytic(tmp_path, *over)
    # Assert: every client's every task is in the ledger, and W is the centralised solution after each task
    final = checkpoint(tmp_path, summary["task_end_rounds"][-1])["strategy"]["analytic"]["ledger"]
    assert final == {str(c): [0, 1, 2] for c in range(clients)}
    _assert_exact_at_every_task_end(tmp_path, summary, over)


@pytest.mark.parametrize("scenario", ["class_incremental", "domain_permuted", "task_incremental"])
def test_accuracy_matrix_equals_the_centralised_heads(tmp_path: Path, scenario: str) -> None:
    # Prepare
    over = (f"stream.scenario={scenario}", "stream.partition=dirichlet", "federation.num_clients=4")
    # Execute
    summary = run_analytic(tmp_path, *over)
    # Assert: the run's accuracy matrix (full test split at each task end) is the centralised head's
    stream = run_stream(over)
    A = np.asarray(summary["accuracy_matrix"])
    for i, r in enumerate(summary["task_end_rounds"]):
        ck = checkpoint(tmp_path, r)
        w_cen, model, exp = ledger_oracle(ck["arrays"], stream, ck["strategy"]["analytic"]["ledger"])
        m = copy.deepcopy(model)
        install_head(m, exp, w_cen, [int(c) for c in torch.nonzero(ck["arrays"]["head.mask"] == 0).flatten()])
        for j in range(i + 1):
            x, y = stream.eval_data(j)
            classes = stream.tasks[j].classes if stream.multi_head else None
            acc = evaluate(m, x, y, task_id=j, multi_head=stream.multi_head, task_classes=classes)[1]
            assert A[i, j] == pytest.approx(acc, abs=1e-12), (i, j)
    assert A[-1].mean() > 0.6  # a real classifier, not a constant


def test_reply_order_does_not_change_a_bit(tmp_path: Path) -> None:
    # Prepare
    over = ("federation.num_clients=5", "stream.partition=dirichlet", "strategy.base_rounds=0")
    # Execute: the same run with replies handed back in two seeded random orders
    heads = []
    for order in (1, 2):
        s = run_analytic(tmp_path / f"o{order}", *over, grid=ShuffledGrid(5, order))
        heads.append(checkpoint(tmp_path / f"o{order}", s["task_end_rounds"][-1])["arrays"][HEAD_WEIGHT])
    # Assert
    assert torch.equal(heads[0], heads[1])


def test_sampling_and_asynchronous_clients_give_the_ridge_of_the_ledger(tmp_path: Path) -> None:
    """Clients sampled 2 of 5 per round and starting at different rounds: W is exact on what the ledger holds."""
    # Prepare
    over = ("federation.num_clients=5", "federation.clients_per_round=2", "federation.rounds_per_task=3",
            "schedule=offsets", "schedule.max_offset=2", "strategy.base_rounds=0")
    # Execute
    summary = run_analytic(tmp_path, *over)
    # Assert
    errors = _assert_exact_at_every_task_end(tmp_path, summary, over)
    assert len(errors) == 2
    state = summary["strategy_state"]
    assert 0 < state["coverage"] <= 1


def test_a_share_missing_from_the_sums_breaks_the_equality(tmp_path: Path) -> None:
    """Planted: the reference on one share more than the ledger holds must not match (the tolerance has teeth)."""
    over = ("federation.num_clients=3", "strategy.base_rounds=0")
    summary = run_analytic(tmp_path, *over)
    stream = run_stream(over)
    ck = checkpoint(tmp_path, summary["task_end_rounds"][0])
    ledger = dict(ck["strategy"]["analytic"]["ledger"])
    ledger["0"] = [*ledger["0"], 1]  # task 1 of client 0 was not learned after task 0
    w_cen, _, _ = ledger_oracle(ck["arrays"], stream, ledger)
    assert rel_err(ck["arrays"][HEAD_WEIGHT][0], w_cen) > 1e3 * RTOL


def test_backbone_is_frozen_after_the_base_rounds(tmp_path: Path) -> None:
    # Prepare / Execute
    summary = run_analytic(tmp_path, "strategy.base_rounds=1", "federation.rounds_per_task=2")
    # Assert: the body never changes after round 1, and only statistics travel afterwards
    bodies = [checkpoint(tmp_path, r)["arrays"] for r in summary["task_end_rounds"]]
    for k in (k for k in bodies[0] if k.startswith("body.")):
        assert torch.equal(bodies[0][k], bodies[1][k])
    assert summary["strategy_state"]["freeze_round"] == 1
    assert summary["strategy_state"]["statistics_rounds"] >= 2
