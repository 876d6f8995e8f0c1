"""Federated analytic learning equals centralised ridge regression: any split, any order, every task.

Set-up: a synthetic stream (6 classes of 1x8x8 blobs, 3 tasks), a frozen randomly initialised
MLP backbone (width 48), a relu expansion to d_e = 96, gamma = 1. The centralised reference is
an independent QR least-squares solve of ``[X; sqrt(gamma) I] W = [Y; 0]`` on the union of the
data (one client holding everything), so it shares no code with the sums or the Cholesky solve.

Tolerance: relative Frobenius error of W below ``RTOL = 1e-11`` at cond(G + gamma I) ~ 2e3
(measured: 6.6e-15 .. 2.1e-14). The accuracy matrices must be equal, entry for entry.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedcl.analytic import Statistics, active_classes, client_statistics, install_head, solve_ridge
from fedcl.data import Stream
from fedcl.trainer import evaluate
from tests.fedcl.analytic.helpers import (
    EXPANSION_DIM,
    GAMMA,
    expansion_for,
    frozen_backbone,
    rel_err,
    ridge_oracle,
    synthetic_stream,
    union_features,
)

RTOL = 1e-11


def federated_sums(model: torch.nn.Module, stream: Stream, pairs: list[tuple[int, int]], order_seed: int,
                   batch_size: int = 32) -> Statistics:
    """The server's sums after every (task, client) in ``pairs`` replied, in a seeded random order."""
    exp = expansion_for(model)
    total = Statistics.zeros(EXPANSION_DIM, stream.num_classes)
    for i in np.random.default_rng(order_seed).permutation(len(pairs)):
        t, c = pairs[int(i)]
        x, y = stream.client_data(t, c)
        total = total + client_statistics(model, exp, x, y, stream.num_classes, batch_size=batch_size)
    return total


def accuracy_row(model: torch.nn.Module, stream: Stream, weight: torch.Tensor, active: list[int] | None,
                 seen: int) -> list[float]:
    """Accuracy of the solved head on the test split of every task seen so far (the evaluator's path)."""
    m = copy.deepcopy(model)
    install_head(m, expansion_for(m), weight, active)
    row = []
    for j in range(seen):
        x, y = stream.eval_data(j)
        row.append(evaluate(m, x, y, task_id=j, multi_head=stream.multi_head,
                            task_classes=stream.tasks[j].classes if stream.multi_head else None)[1])
    return row


@pytest.mark.parametrize("partition", ["iid", "shards", "dirichlet"])
@pytest.mark.parametrize("num_clients", [1, 3, 8])
def test_federated_solution_equals_centralised_for_any_split_and_order(partition: str, num_clients: int) -> None:
    # Prepare: the same three tasks, once split over clients, once held by one client
    fed_stream = synthetic_stream(num_clients=num_clients, partition=partition)
    central = synthetic_stream(num_clients=1, partition="iid")
    model = frozen_backbone(central)
    pairs = [(t, c) for t in range(3) for c in range(num_clients)]  # replies of all tasks, interleaved
    # Execute
    w_fed = solve_ridge(federated_sums(model, fed_stream, pairs, order_seed=num_clients), GAMMA)
    # Assert
    x, y = union_features(model, expansion_for(model), central, [(t, 0) for t in range(3)])
    assert rel_err(w_fed, ridge_oracle(x, y, 6, GAMMA)) < RTOL


def test_two_splits_and_two_orders_give_the_same_solution() -> None:
    # Prepare
    a, b = synthetic_stream(num_clients=3, partition="iid"), synthetic_stream(num_clients=7, partition="dirichlet")
    model = frozen_backbone(a)
    # Execute
    w_a = solve_ridge(federated_sums(model, a, [(t, c) for t in range(3) for c in range(3)], 0, 16), GAMMA)
    w_b = solve_ridge(federated_sums(model, b, [(t, c) for t in range(3) for c in range(7)], 1, 1000), GAMMA)
    # Assert
    assert rel_err(w_a, w_b) < RTOL


@pytest.mark.parametrize("scenario", ["class_incremental", "domain_permuted", "task_incremental"])
def test_accuracy_matrix_equals_the_centralised_one_after_every_task(scenario: str) -> None:
    """One statistics round per task; after each task the federated head and the centralised
    ridge head on all data seen so far score identically on every seen task."""
    # Prepare
    fed_stream = synthetic_stream(scenario, num_clients=5, partition="dirichlet")
    central = synthetic_stream(scenario, num_clients=1, partition="iid")
    model = frozen_backbone(central)
    exp = expansion_for(model)
    sums = Statistics.zeros(EXPANSION_DIM, 6)
    acc_fed, acc_cen = np.zeros((3, 3)), np.zeros((3, 3))
    for t in range(3):
        # Execute: the round of task t (replies in a random order), then the centralised refit
        sums = sums + federated_sums(model, fed_stream, [(t, c) for c in range(5)], order_seed=t)
        w_fed = solve_ridge(sums, GAMMA)
        x, y = union_features(model, exp, central, [(j, 0) for j in range(t + 1)])
        w_cen = ridge_oracle(x, y, 6, GAMMA)
        assert rel_err(w_fed, w_cen) < RTOL
        acc_fed[t, : t + 1] = accuracy_row(model, fed_stream, w_fed, active_classes(sums.class_counts), t + 1)
        acc_cen[t, : t + 1] = accuracy_row(model, central, w_cen, sorted(set(y.tolist())), t + 1)
    # Assert
    np.testing.assert_array_equal(acc_fed, acc_cen)
    chance = 1.0 / len(central.tasks[0].classes) if scenario == "task_incremental" else 1.0 / 6
    assert acc_fed[2].mean() > chance + 0.2  # the matrix is a real classifier's, not a constant's


def test_task_incremental_per_task_heads_equal_per_task_centralised_solutions() -> None:
    """The other reading of multi-head: one sum and one solution per task id (head t sees task t only)."""
    # Prepare
    fed_stream = synthetic_stream("task_incremental", num_clients=4, partition="shards")
    central = synthetic_stream("task_incremental", num_clients=1, partition="iid")
    model = frozen_backbone(central)
    exp = expansion_for(model)
    # Execute
    w_fed = torch.stack([solve_ridge(federated_sums(model, fed_stream, [(t, c) for c in range(4)], t), GAMMA)
                         for t in range(3)])
    w_cen = torch.stack([ridge_oracle(*union_features(model, exp, central, [(t, 0)]), 6, GAMMA) for t in range(3)])
    # Assert
    assert rel_err(w_fed, w_cen) < RTOL
    assert accuracy_row(model, fed_stream, w_fed, None, 3) == accuracy_row(model, central, w_cen, None, 3)


def test_a_missing_reply_is_detected() -> None:
    """Planted: drop one client's reply; the solution must no longer match (guards the tolerance)."""
    fed_stream = synthetic_stream(num_clients=4, partition="iid")
    central = synthetic_stream(num_clients=1, partition="iid")
    model = frozen_backbone(central)
    partial = federated_sums(model, fed_stream, [(t, c) for t in range(3) for c in range(3)], order_seed=0)
    x, y = union_features(model, expansion_for(model), central, [(t, 0) for t in range(3)])
    assert rel_err(solve_ridge(partial, GAMMA), ridge_oracle(x, y, 6, GAMMA)) > 1e3 * RTOL
