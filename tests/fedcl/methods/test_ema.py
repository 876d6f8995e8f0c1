"""EMA baseline: the averaging math on a tiny model, forgetting, state round trip."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from fedcl.methods.ema import EMA
from fedcl.methods.naive import Naive
from tests.fedcl.methods.toy import run_two_tasks


def assert_state_equal(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.device.type == "cpu" and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_state_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_state_equal(x, y)
    else:
        assert a == b


class _Ctx:
    def __init__(self, model: nn.Module) -> None:
        self.model = model


def test_ema_math_on_tiny_model() -> None:
    model = nn.Linear(2, 1)
    method = EMA(beta=0.25)
    values = [1.0, 3.0, -2.0]
    for v in values:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(v)
        method.after_round(_Ctx(model))  # type: ignore[arg-type]
        method = _restored(method)
    expected = 1.0
    for v in values[1:]:
        expected = 0.25 * expected + 0.75 * v
    with torch.no_grad():
        model.weight.fill_(100.0)
    method.after_task(_Ctx(model))  # type: ignore[arg-type]
    assert torch.allclose(model.weight, torch.full_like(model.weight, expected))
    assert torch.allclose(model.bias, torch.full_like(model.bias, expected))


def _restored(method: EMA) -> EMA:
    fresh = EMA(beta=method.beta)
    fresh.load_state_dict(method.state_dict())
    return fresh


@pytest.mark.parametrize("seed", [0, 1])
def test_ema_forgets_less_than_naive(seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    ema = run_two_tasks(lambda: EMA(beta=0.7), seed=seed)
    assert ema.forgetting < naive.forgetting - 0.2
    assert ema.acc1_after_task1 > 0.8  # still learns the new task


def test_ema_state_round_trip() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    method = EMA(beta=0.5)
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        method.after_round(_Ctx(model))  # type: ignore[arg-type]
    state = method.state_dict()
    restored = EMA(beta=0.5)
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)
    assert "1.num_batches_tracked" not in state["ema"]


def test_beta_outside_unit_interval_is_an_error_and_no_average_means_no_swap() -> None:
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="beta"):
            EMA(beta=bad)
    model = nn.Linear(2, 1)
    before = model.weight.detach().clone()
    EMA().after_task(_Ctx(model))  # type: ignore[arg-type]  # nothing averaged yet
    assert torch.equal(model.weight, before)
    EMA(beta=0.0)
    EMA(beta=1.0)
