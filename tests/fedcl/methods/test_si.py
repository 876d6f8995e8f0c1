"""Synaptic Intelligence: importance from the path integral, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedcl.methods.si import SI
from tests.fedcl.methods.baselines import naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx


def test_importance_is_nonnegative_and_path_reset_at_task_end() -> None:
    _, method = run_capture(SI, {"si_c": 1.0}, seed=0)
    assert isinstance(method, SI)
    assert method.omega and all((o >= 0).all() for o in method.omega.values())
    assert sum(float(o.sum()) for o in method.omega.values()) > 0
    assert method.path == {} and method.anchor.keys() == method.omega.keys()


@pytest.mark.parametrize("seed", [0, 1])
def test_si_forgets_less_than_naive(seed: int) -> None:
    naive = naive_toy(seed)
    si, _ = run_capture(SI, {"si_c": 5.0, "xi": 0.1}, seed=seed)
    assert si.forgetting < naive.forgetting - 0.3
    assert si.acc1_after_task1 > 0.9


def test_si_state_round_trip() -> None:
    _, method = run_capture(SI, {}, seed=0)
    restored = SI()
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


def test_path_integral_by_hand_counts_the_task_loss_only() -> None:
    # Prepare: one weight row w = [0, 0] with Omega = [2, 0.5], w* = [1, -1] from an earlier task, si_c = 0.5;
    # task loss 0.5 ||w - c||^2 with c = [3, 1]; two SGD steps of lr 0.1 driven by hand
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    method = SI(si_c=0.5, xi=0.1)
    method.omega = {"weight": torch.tensor([[2.0, 0.5]])}
    method.anchor = {"weight": torch.tensor([[1.0, -1.0]])}
    ctx = make_ctx(model, 1, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    method.before_task(ctx)
    c = torch.tensor([[3.0, 1.0]])
    for _ in range(2):
        base = 0.5 * ((model.weight - c) ** 2).sum()
        model.zero_grad()
        method.loss(torch.zeros(1), torch.zeros(1), base, ctx).backward()
        method.after_backward(ctx)
        with torch.no_grad():
            model.weight -= 0.1 * model.weight.grad
    method.after_round(ctx)
    # Assert: step 1: task gradient [-3, -1], penalty gradient [-2, 0.5] -> w = [0.5, 0.05];
    # step 2: task gradient [-2.5, -0.95], penalty gradient [-1, 0.525] -> w = [0.85, 0.0925];
    # path = -sum g_task * dw = [3 * 0.5 + 2.5 * 0.35, 1 * 0.05 + 0.95 * 0.0425] = [2.375, 0.090375]
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[0.85, 0.0925]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(method.path["weight"], torch.tensor([[2.375, 0.090375]]), rtol=0, atol=1e-6)
    # Execute: the task ends in a later round (state round trip in between)
    restored = SI(si_c=0.5, xi=0.1)
    restored.load_state_dict(method.state_dict())
    restored.after_task(ctx)
    # Assert: Omega += relu(path) / (Delta^2 + xi), Delta = [0.85, 0.0925] over the task; w* moves to w
    want = torch.tensor([[2.0 + 2.375 / (0.85**2 + 0.1), 0.5 + 0.090375 / (0.0925**2 + 0.1)]])
    torch.testing.assert_close(restored.omega["weight"], want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(restored.anchor["weight"], torch.tensor([[0.85, 0.0925]]), rtol=0, atol=1e-6)
    assert restored.path == {}


def test_penalty_is_si_c_times_importance_weighted_distance() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, -1.0]]))
    method = SI(si_c=0.25)
    method.omega = {"weight": torch.tensor([[2.0, 4.0]])}
    method.anchor = {"weight": torch.tensor([[1.0, 0.0]])}
    got = method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), make_ctx(model, 1, torch.zeros(1, 2),
                                                                                  torch.zeros(1)))
    # 1 + 0.25 * (2 * 2^2 + 4 * 1^2) = 4
    torch.testing.assert_close(got.detach(), torch.tensor(4.0))
    assert SI(si_c=0.0).loss(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), None) == 1.0  # type: ignore[arg-type]


def test_negative_path_gives_no_importance() -> None:
    # a weight that moved against its task gradient on net (path < 0) earns nothing
    model = nn.Linear(2, 1, bias=False)
    method = SI(xi=1.0)
    ctx = make_ctx(model, 0, torch.zeros(1, 2), torch.zeros(1))
    method.before_task(ctx)
    method.path = {"weight": torch.tensor([[-3.0, 2.0]])}
    with torch.no_grad():
        model.weight.add_(1.0)
    method.after_task(ctx)
    torch.testing.assert_close(method.omega["weight"], torch.tensor([[0.0, 1.0]]))


def test_path_starts_when_restored_mid_task_and_counts_the_full_gradient_without_penalty() -> None:
    # a method rebuilt without before_task (no path yet) starts the integral at the first step;
    # with si_c = 0 there is no penalty, so the whole gradient is the task's
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    method = SI(si_c=0.0)
    method.omega = {"weight": torch.tensor([[5.0]])}
    method.anchor = {"weight": torch.tensor([[0.0]])}
    ctx = make_ctx(model, 1, torch.zeros(1, 1), torch.zeros(1))
    loss = method.loss(torch.zeros(1), torch.zeros(1), (model.weight**2).sum(), ctx)  # gradient 2w = 2
    loss.backward()
    method.after_backward(ctx)
    with torch.no_grad():
        model.weight -= 0.25 * model.weight.grad  # w: 1 -> 0.5
    method.after_round(ctx)
    torch.testing.assert_close(method.path["weight"], torch.tensor([[1.0]]))  # -2 * (0.5 - 1)
    torch.testing.assert_close(method.task_start["weight"], torch.tensor([[1.0]]))


def test_si_c_one_by_hand_loss_and_path() -> None:
    # w = [0, 0], Omega = [2, 0.5], w* = [1, -1], si_c = 1, task loss 0.5 ||w - [3, 1]||^2, one step of lr 0.1
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    method = SI(si_c=1.0)
    method.omega = {"weight": torch.tensor([[2.0, 0.5]])}
    method.anchor = {"weight": torch.tensor([[1.0, -1.0]])}
    ctx = make_ctx(model, 1, torch.zeros(1, 2), torch.zeros(1))
    method.before_task(ctx)
    loss = method.loss(torch.zeros(1), torch.zeros(1), 0.5 * ((model.weight - torch.tensor([[3.0, 1.0]])) ** 2).sum(),
                       ctx)
    torch.testing.assert_close(loss.detach(), torch.tensor(5.0 + 2.5))  # base 5, penalty 2 * 1 + 0.5 * 1
    loss.backward()
    method.after_backward(ctx)
    with torch.no_grad():
        model.weight -= 0.1 * model.weight.grad  # gradient [-3, -1] + [-4, 1] -> w = [0.7, 0]
    method.after_round(ctx)
    torch.testing.assert_close(method.path["weight"], torch.tensor([[2.1, 0.0]]))  # -[-3, -1] * [0.7, 0]


def test_fresh_state_parameters_without_gradient_and_reuse_after_task_end() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Parameter(torch.ones(1))  # before "used" in parameter order, never gets a gradient
            self.used = nn.Parameter(torch.zeros(1))

    assert SI().si_c == 0.5 and SI().xi == 0.1
    assert SI().state_dict() == {"omega": {}, "anchor": {}, "path": {}, "task_start": {}}
    base = torch.tensor(1.0)
    assert SI(si_c=2.0).loss(torch.zeros(1), torch.zeros(1), base, None) is base  # type: ignore[arg-type]
    model = Two()
    method = SI(si_c=1.0, xi=0.5)
    ctx = make_ctx(model, 0, torch.zeros(1, 1), torch.zeros(1))
    method.before_task(ctx)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        ((model.used - 2.0) ** 2).sum().backward()  # gradient 2 (w - 2)
        method.after_backward(ctx)
        with torch.no_grad():
            model.used -= 0.25 * model.used.grad
    method.after_round(ctx)
    # w: 0 -> 1 -> 1.5; path = 4 * 1 + 2 * 0.5 = 5; the parameter without gradient gathers nothing
    torch.testing.assert_close(method.path["used"], torch.tensor([5.0]))
    torch.testing.assert_close(method.path["unused"], torch.tensor([0.0]))
    method.after_task(ctx)
    torch.testing.assert_close(method.omega["used"], torch.tensor([5.0 / (1.5**2 + 0.5)]))
    # the same object keeps working after the task end: its penalty is active at once
    assert float(method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(0.0), ctx).detach()) == 0.0
    with torch.no_grad():
        model.used += 1.0
    assert float(method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(0.0), ctx).detach()) > 0.0


def test_task_end_without_a_recorded_start_or_path() -> None:
    model = nn.Linear(1, 1, bias=False)
    method = SI(xi=0.5)
    method.path = {"weight": torch.tensor([[2.0]])}  # no task_start (restored from an older state)
    method.after_task(make_ctx(model, 0, torch.zeros(1, 1), torch.zeros(1)))
    torch.testing.assert_close(method.omega["weight"], torch.tensor([[4.0]]))  # Delta = 0: 2 / 0.5
    other = SI()
    other.after_task(make_ctx(model, 0, torch.zeros(1, 1), torch.zeros(1)))  # no path at all: no importance
    torch.testing.assert_close(other.omega["weight"], torch.tensor([[0.0]]))
