"""Online EWC: penalty form, online Fisher accumulation, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch

from fedcl.methods.base import TaskContext
from fedcl.methods.ewc import EWC
from tests.fedcl.methods.baselines import naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import NUM_CLASSES3, make_ctx, make_model, run_federated, toy_task3


def test_penalty_is_half_lambda_fisher_weighted_distance() -> None:
    model = make_model(0)
    method = EWC(ewc_lambda=3.0)
    method.anchor = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    method.fisher = {n: torch.full_like(p, 2.0) for n, p in model.named_parameters()}
    ctx = type("Ctx", (), {"model": model, "device": torch.device("cpu")})()
    got = method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(0.0), ctx)  # type: ignore[arg-type]
    want = 0.5 * 3.0 * sum(float((2.0 * p.detach() ** 2).sum()) for p in model.parameters())
    assert torch.allclose(got, torch.tensor(want))


def test_fisher_accumulates_online() -> None:
    _, method = run_capture(EWC, {"gamma": 0.5, "fisher_samples": 32}, seed=0)
    assert isinstance(method, EWC)
    # two tasks finished: F = 0.5 * F_0 + F_1, non-negative, anchors on the CPU
    assert method.fisher and all((f >= 0).all() for f in method.fisher.values())
    assert all(a.device.type == "cpu" for a in method.anchor.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_ewc_forgets_less_than_naive(seed: int) -> None:
    naive = naive_toy(seed)
    ewc, _ = run_capture(EWC, {"ewc_lambda": 100.0, "fisher_samples": 128}, seed=seed)
    assert ewc.forgetting < naive.forgetting - 0.2
    assert ewc.acc1_after_task1 > 0.9


def test_ewc_state_round_trip() -> None:
    _, method = run_capture(EWC, {"fisher_samples": 32}, seed=0)
    restored = EWC(fisher_samples=32)
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


@pytest.mark.parametrize(("max_step", "stable"), [(1.0, True), (None, False)])
def test_curvature_cap_keeps_sgd_on_a_stiff_penalty_stable(max_step: float | None, stable: bool) -> None:
    # Prepare: Fisher so large that lr * lambda * F = 5 > 2 (plain SGD on the quadratic diverges)
    model = make_model(0)
    method = EWC(ewc_lambda=1.0, max_penalty_step=max_step)
    method.anchor = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    method.fisher = {n: torch.full_like(p, 100.0) for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ctx = type("Ctx", (), {"model": model, "device": torch.device("cpu"), "optimizer": opt})()
    start = sum(float(p.detach().abs().sum()) for p in model.parameters())
    # Execute: twenty steps on the penalty alone
    for _ in range(20):
        opt.zero_grad()
        method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(0.0), ctx).backward()  # type: ignore[arg-type]
        opt.step()
    end = sum(float(p.detach().abs().sum()) for p in model.parameters())
    # Assert: capped, the weights reach the anchor; uncapped, they blow up
    assert (end < 1e-3 * start) if stable else (end > 1e3 * start)


class _Recording(EWC):
    """EWC that keeps a copy of every task's Fisher estimate (class-level: rebuilt every round)."""

    estimates: list[dict[str, torch.Tensor]] = []

    def estimate_fisher(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        new = super().estimate_fisher(ctx)
        _Recording.estimates.append({k: v.clone() for k, v in new.items()})
        return new


def test_online_fisher_over_three_tasks_keeps_decayed_earlier_importance() -> None:
    # Prepare / Execute: three class-incremental tasks, gamma = 0.5, one client through the FedAvg driver
    _Recording.estimates = []
    result = run_federated(lambda: _Recording(ewc_lambda=10.0, gamma=0.5, fisher_samples=16), num_clients=1,
                           num_tasks=3, task_fn=toy_task3, num_classes=NUM_CLASSES3, rounds_per_task=1, epochs=1,
                           n=64)
    # Assert: F = 0.5 (0.5 F_0 + F_1) + F_2 and w* = the weights at the end of task 2
    f0, f1, f2 = _Recording.estimates
    state = result.states[0]
    for name in f0:
        torch.testing.assert_close(state["fisher"][name], 0.25 * f0[name] + 0.5 * f1[name] + f2[name])
        torch.testing.assert_close(state["anchor"][name], result.model.state_dict()[name])
    assert all(float(f.sum()) > 0 for f in f0.values())


def test_fisher_is_the_mean_of_squared_per_sample_gradients() -> None:
    # Prepare: two samples through a tiny linear model
    model = torch.nn.Linear(2, 2)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1])
    ctx = make_ctx(model, 0, x, y, task_classes=[0, 1])
    # Execute
    fisher = EWC(fisher_samples=10).estimate_fisher(ctx)
    # Assert: mean_i (d CE_i / d w)^2 computed sample by sample (not the square of the mean gradient)
    want = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(2):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None
            want[n] += p.grad**2 / 2
    for n in want:
        torch.testing.assert_close(fisher[n], want[n])


def test_curvature_cap_is_max_step_over_lr_lambda() -> None:
    model = make_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ctx = make_ctx(model, 0, torch.zeros(1, 16), torch.zeros(1), optimizer=opt)
    assert EWC(ewc_lambda=4.0, max_penalty_step=1.0).curvature_cap(ctx) == pytest.approx(5.0)
    assert EWC(ewc_lambda=4.0, max_penalty_step=None).curvature_cap(ctx) is None
    assert EWC(ewc_lambda=4.0).curvature_cap(make_ctx(model, 0, torch.zeros(1, 16), torch.zeros(1))) is None
    with pytest.raises(ValueError, match="max_penalty_step"):
        EWC(max_penalty_step=0.0)
    # a zero learning rate takes no step: nothing to cap
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    assert EWC(max_penalty_step=1.0).curvature_cap(make_ctx(model, 0, torch.zeros(1, 16), torch.zeros(1),
                                                             optimizer=frozen)) is None


def test_no_fisher_or_zero_lambda_hands_back_the_trainers_loss_untouched() -> None:
    # Prepare: a fresh EWC (no Fisher yet) and one with a Fisher but lambda 0
    model = make_model(0)
    ctx = type("Ctx", (), {"model": model, "device": torch.device("cpu")})()
    off = EWC(ewc_lambda=0.0)
    off.anchor = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    off.fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    base = torch.tensor(1.5)
    # Execute / Assert: the same tensor, no penalty graph built
    assert EWC().loss(torch.zeros(1), torch.zeros(1), base, ctx) is base  # type: ignore[arg-type]
    assert off.loss(torch.zeros(1), torch.zeros(1), base, ctx) is base  # type: ignore[arg-type]
