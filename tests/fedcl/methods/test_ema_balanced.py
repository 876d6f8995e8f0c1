"""Balanced EMA: the authors' rule against hand-computed values, task boundaries, state round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from fedcl.methods.base import TaskContext
from fedcl.methods.ema_balanced import EMABalanced
from fedcl.methods.naive import Naive
from fedcl.trainer import train_local
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks, sgd


def _two_weight_model(w: list[float]) -> nn.Linear:
    """Logits ``[w0 x, w1 x]``: two parameters in one tensor (the rule's norms are per tensor)."""
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w).view(2, 1))
    return model


def _one_step_round(method: EMABalanced, model: nn.Module, rnd: int, task: int = 0, first: bool = False,
                    last: bool = False) -> TaskContext:
    """One client round of one SGD step (lr 1) on the single sample ``x = 1, y = 0``."""
    ctx = TaskContext(
        model=model, task_id=task, client_id=0, server_round=rnd, task_round=0, last_round_of_task=last,
        x=torch.ones(1, 1), y=torch.zeros(1, dtype=torch.long), device=torch.device("cpu"), num_classes=2,
        task_classes=[0, 1], seen_tasks=list(range(task + 1)), global_params={},
        generator=torch.Generator().manual_seed(rnd),
    )  # fmt: skip
    if first:
        method.before_task(ctx)
    train_local(method, ctx, sgd(1.0, 1))
    if last:
        method.after_task(ctx)
    return ctx


def _rebuilt(method: EMABalanced) -> EMABalanced:
    """The method as the client app rebuilds it for the next round."""
    fresh = EMABalanced()
    fresh.load_state_dict(method.state_dict())
    return fresh


# By hand, one sample x = 1, y = 0, lr 1, logits w: the cross-entropy gradient is
# g = softmax(w) - (1, 0), and the step is w <- w - g.
# Step 1 (round 1, task start) from w = (0, 0): g1 = (-1/2, 1/2), w1 = (1/2, -1/2). The average starts
# at w1 and, with no previous gradient, takes the fallback: p* = 0.99 w1 + 0.01 w1 = w1.
# Step 2 (round 2) from the server's w = (-s, s), with q = 1 / (1 + e^(2s)) = softmax(w)_0:
# g2 = (q - 1, 1 - q), w2 = (-s + 1 - q, s - 1 + q), and the authors' rule (L1 norms, after the step):
#   a = |w2 - p*|_1 = 2 |s - 1 + q + 1/2|,  b = |g2|_1 = 2 (1 - q),  c = |g2 - g1|_1 = 2 |1/2 - q|,
#   alpha = 2 (1 + b) / (a c), replaced by 0.01 outside (0, 1);  p* <- (1 - alpha) p* + alpha w2.
# s = 5: q = 4.54e-5, a = 9.0001, b = 1.9999, c = 0.9999, alpha = 0.66670 (inside (0, 1)).
#   (Before the step, a would be 11 and alpha 0.545; with L2 norms alpha = 1.07, the fallback.)
# s = -1/2 (the client's own w1 back): q = 0.7311, a = 0.5379, b = 0.5379, c = 0.4621, alpha = 12.4
#   -> the fallback 0.01.
def _by_hand(s: float) -> tuple[float, list[float]]:
    q = 1.0 / (1.0 + math.exp(2 * s))
    w1 = [0.5, -0.5]
    w2 = [-s + 1 - q, s - 1 + q]
    a = abs(w2[0] - w1[0]) + abs(w2[1] - w1[1])
    b = 2 * (1 - q)
    c = 2 * abs(0.5 - q)
    alpha = 2 * (1 + b) / (a * c)
    if not 0 < alpha < 1:
        alpha = 0.01
    return alpha, [(1 - alpha) * w1[i] + alpha * w2[i] for i in range(2)]


@pytest.mark.parametrize(("s", "alpha_approx"), [(5.0, 0.66670), (-0.5, 0.01)])
def test_coin_rule_matches_the_hand_computed_average_after_two_steps(s: float, alpha_approx: float) -> None:
    # Prepare: round 1 of a task, one step from (0, 0)
    method = EMABalanced()
    model = _two_weight_model([0.0, 0.0])
    _one_step_round(method, model, rnd=1, first=True)
    assert torch.allclose(method.ema["weight"].view(-1), torch.tensor([0.5, -0.5]))
    assert torch.allclose(method.prev_grad["weight"].view(-1), torch.tensor([-0.5, 0.5]))
    # Execute: round 2 (method rebuilt from its state) from the server's weights (-s, s)
    method = _rebuilt(method)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-s], [s]]))
    ctx = _one_step_round(method, model, rnd=2)
    # Assert: the average is the hand-computed one; beta = 1 - alpha is reported
    alpha, want = _by_hand(s)
    assert alpha == pytest.approx(alpha_approx, abs=1e-5)
    assert method.ema["weight"].view(-1).tolist() == pytest.approx(want, rel=1e-5)
    assert method.last_betas["weight"] == pytest.approx(1 - alpha, rel=1e-5)
    assert ctx.metrics["ema-fallback-share"] == (1.0 if alpha == 0.01 else 0.0)
    assert ctx.metrics["ema-beta-mean"] == pytest.approx(1 - alpha, rel=1e-5)  # one step, one tensor


def test_task_end_loads_the_average_and_the_next_task_restarts_it() -> None:
    # Prepare: one task of two one-step rounds, the second from (-5, 5) (alpha = 0.6667, see above)
    method = EMABalanced()
    model = _two_weight_model([0.0, 0.0])
    _one_step_round(method, model, rnd=1, first=True)
    method = _rebuilt(method)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-5.0], [5.0]]))
    # Execute: the round ends the task
    _one_step_round(method, model, rnd=2, last=True)
    # Assert: the model holds the average; a new task starts the average at its first step's weights
    _, want = _by_hand(5.0)
    assert model.weight.detach().view(-1).tolist() == pytest.approx(want, rel=1e-5)
    method = _rebuilt(method)
    start = model.weight.detach().clone()
    _one_step_round(method, model, rnd=3, task=1, first=True)
    assert not torch.allclose(method.ema["weight"], start)
    assert torch.allclose(method.ema["weight"], model.weight.detach())
    assert method.last_betas["weight"] == pytest.approx(0.99)  # no previous gradient in this task


@pytest.mark.parametrize("seed", [0, 1])
def test_ema_balanced_learns_the_new_task_and_forgets_less_than_naive(seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    bal = run_two_tasks(EMABalanced, seed=seed)  # the YAML defaults
    # measured: forgetting 0.48 / 0.40 against naive's 0.53 / 0.51 (seeds 0 / 1)
    assert bal.forgetting < naive.forgetting - 0.04
    assert bal.acc1_after_task1 > 0.9


def test_ema_balanced_state_round_trip() -> None:
    method = EMABalanced()
    model = _two_weight_model([0.0, 0.0])
    for rnd in (1, 2):
        _one_step_round(method, model, rnd=rnd, first=rnd == 1)
    state: dict[str, Any] = method.state_dict()
    assert set(state) == {"ema", "prev_grad"}
    restored = EMABalanced()
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)


def test_bad_fallback_is_refused() -> None:
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fallback"):
            EMABalanced(fallback=bad)
    assert EMABalanced(fallback=1.0).fallback == 1.0  # alpha = 1: the average is the live weights
    assert EMABalanced().last_betas == {}
