"""Online EWC: penalty form, online Fisher accumulation, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch

from fedcl.methods.ewc import EWC
from tests.fedcl.methods.baselines import naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_model


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
