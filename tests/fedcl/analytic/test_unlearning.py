"""Exact unlearning: a downdate of the sums (or ACU's Woodbury form) equals retraining without the data.

The retrain oracle is the analytic learner's own: the independent least-squares ridge solve
on the union of the data that remains (``helpers.ridge_oracle``). Backbone frozen before any
request, so exactness is claimed for the head alone. Set-up as in ``test_exactness.py``
(5 clients, Dirichlet split, 3 tasks, d_e = 96, gamma = 1).

Tolerance ``RTOL = 1e-11`` on W (measured: downdate 7.8e-15 .. 1.5e-14, Woodbury and its
chain of three requests 9.5e-15 .. 3.4e-14; a request moves W by 0.23 .. 0.29); after a
class request the accuracy rows must be equal.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fedcl.analytic import (
    Statistics,
    active_classes,
    client_statistics,
    ridge_inverse,
    solve_ridge,
    woodbury_forget,
)
from fedcl.data import Stream
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
from tests.fedcl.analytic.test_exactness import accuracy_row

RTOL = 1e-11
NUM_CLIENTS = 5
Keep = Callable[[torch.Tensor], torch.Tensor]
Setup = tuple[Stream, torch.nn.Module, list[tuple[int, int]], Statistics]


def _all(y: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(y, dtype=torch.bool)


def without(classes: set[int]) -> Keep:
    """Samples whose label is not in ``classes`` (a snapshot: later changes to the set do not count)."""
    excluded = torch.tensor(sorted(classes), dtype=torch.long)
    return lambda y: ~torch.isin(y, excluded)


def only(label: int, keep: Keep) -> Keep:
    return lambda y: keep(y) & (y == label)


def holders_sum(model: torch.nn.Module, stream: Stream, pairs: list[tuple[int, int]], keep: Keep = _all) -> Statistics:
    """Sum of the statistics the holders of ``pairs`` send, over their samples selected by ``keep``."""
    exp = expansion_for(model)
    total = Statistics.zeros(EXPANSION_DIM, stream.num_classes)
    for t, c in pairs:
        x, y = stream.client_data(t, c)
        sel = keep(y)
        total = total + client_statistics(model, exp, x[sel], y[sel], stream.num_classes, batch_size=64)
    return total


def oracle(model: torch.nn.Module, stream: Stream, pairs: list[tuple[int, int]], keep: Keep = _all) -> torch.Tensor:
    """The retrain oracle: ridge from scratch on what remains."""
    x, y = union_features(model, expansion_for(model), stream, pairs)
    sel = keep(y)
    return ridge_oracle(x[sel], y[sel], stream.num_classes, GAMMA)


@pytest.fixture(scope="module")
def setup() -> Setup:
    stream = synthetic_stream(num_clients=NUM_CLIENTS, partition="dirichlet")
    model = frozen_backbone(stream)
    pairs = [(t, c) for t in range(3) for c in range(NUM_CLIENTS)]
    return stream, model, pairs, holders_sum(model, stream, pairs)


@pytest.mark.parametrize("client", [0, 3])
def test_client_request_equals_the_retrain_oracle(setup: Setup, client: int) -> None:
    # Prepare
    stream, model, pairs, sums = setup
    forget = holders_sum(model, stream, [(t, c) for t, c in pairs if c == client])
    w_oracle = oracle(model, stream, [(t, c) for t, c in pairs if c != client])
    # Execute: the reference downdate and ACU's Woodbury form on the solved inverse
    w_down = solve_ridge(sums - forget, GAMMA)
    _, w_wood = woodbury_forget(ridge_inverse(sums, GAMMA), solve_ridge(sums, GAMMA), forget, GAMMA)
    # Assert
    assert rel_err(w_down, w_oracle) < RTOL
    assert rel_err(w_wood, w_oracle) < RTOL
    assert rel_err(solve_ridge(sums, GAMMA), w_oracle) > 1e3 * RTOL  # the request did change the model


def test_class_request_equals_the_retrain_oracle(setup: Setup) -> None:
    # Prepare: every holder of class 2 sends the statistics of its class-2 samples
    stream, model, pairs, sums = setup
    forget = holders_sum(model, stream, pairs, only(2, _all))
    # Execute
    after = sums - forget
    w_down = solve_ridge(after, GAMMA)
    # Assert
    w_oracle = oracle(model, stream, pairs, without({2}))
    assert rel_err(w_down, w_oracle) < RTOL
    assert float(after.class_counts[2]) == 0.0 and 2 not in active_classes(after.class_counts)
    assert accuracy_row(model, stream, w_down, active_classes(after.class_counts), 3) == \
        accuracy_row(model, stream, w_oracle, [0, 1, 3, 4, 5], 3)


def test_sequential_requests_compose(setup: Setup) -> None:
    """Client 1 leaves, then class 4 is forgotten (by the clients still holding it), then client 3."""
    # Prepare
    stream, model, pairs, sums = setup
    gone: set[int] = set()
    dropped: set[int] = set()
    inv, w_wood = ridge_inverse(sums, GAMMA), solve_ridge(sums, GAMMA)
    for kind, target in (("client", 1), ("class", 4), ("client", 3)):
        remaining = [(t, c) for t, c in pairs if c not in gone]
        if kind == "client":
            forget = holders_sum(model, stream, [(t, c) for t, c in remaining if c == target], without(dropped))
            gone.add(target)
        else:
            forget = holders_sum(model, stream, remaining, only(target, without(dropped)))
            dropped.add(target)
        # Execute
        sums = sums - forget
        inv, w_wood = woodbury_forget(inv, w_wood, forget, GAMMA)
        # Assert: after every request, both paths equal the oracle without everything forgotten so far
        w_oracle = oracle(model, stream, [(t, c) for t, c in pairs if c not in gone], without(dropped))
        assert rel_err(solve_ridge(sums, GAMMA), w_oracle) < RTOL
        assert rel_err(w_wood, w_oracle) < RTOL
