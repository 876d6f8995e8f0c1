"""LiNeS: the per-layer scaling math on a tiny model, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedcl.methods.lines import LiNeS, layer_groups, lines_scales
from fedcl.methods.naive import Naive
from fedcl.models import MLP
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks


class _Ctx:
    def __init__(self, model: nn.Module) -> None:
        self.model = model


def test_scales_are_linear_in_depth() -> None:
    assert lines_scales(5, 0.2, 0.8) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lines_scales(1, 0.2, 0.8) == pytest.approx([1.0])


def test_each_layer_update_scaled_by_its_lambda() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 2, hidden=[4, 4], num_heads=2)  # 2 body layers + heads = 3 layers
    groups = layer_groups(model)
    assert groups == [
        ["body.1.weight", "body.1.bias"],
        ["body.3.weight", "body.3.bias"],
        ["head.heads.0.weight", "head.heads.0.bias", "head.heads.1.weight", "head.heads.1.bias"],
    ]
    method = LiNeS(alpha=0.1, beta=0.6, scale_first_task=True)
    method.before_task(_Ctx(model))  # type: ignore[arg-type]
    start = {k: p.detach().clone() for k, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    end = {k: p.detach().clone() for k, p in model.named_parameters()}
    state = method.state_dict()
    method = LiNeS(alpha=0.1, beta=0.6, scale_first_task=True)
    method.load_state_dict(state)  # w_start crosses rounds through the state only
    method.after_task(_Ctx(model))  # type: ignore[arg-type]
    params = dict(model.named_parameters())
    for names, lam in zip(groups, [0.1, 0.4, 0.7], strict=True):
        for k in names:
            assert torch.allclose(params[k], start[k] + lam * (end[k] - start[k]), atol=1e-6)


def test_first_task_unscaled_by_default() -> None:
    # two layers, so scaling would move the first one (lambda = alpha = 0.3)
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    method = LiNeS()
    assert method.state_dict() == {"start": {}, "tasks_done": 0}  # a fresh client's state
    method.before_task(_Ctx(model))  # type: ignore[arg-type]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    end = {k: p.detach().clone() for k, p in model.named_parameters()}
    method.after_task(_Ctx(model))  # type: ignore[arg-type]
    assert all(torch.equal(p, end[k]) for k, p in model.named_parameters())
    # the second task is scaled
    method.before_task(_Ctx(model))  # type: ignore[arg-type]
    with torch.no_grad():
        model[0].weight.add_(1.0)
    method.after_task(_Ctx(model))  # type: ignore[arg-type]
    torch.testing.assert_close(model[0].weight, end["0.weight"] + 0.3)


@pytest.mark.parametrize("seed", [0, 1])
def test_lines_forgets_less_than_naive(seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    lines = run_two_tasks(lambda: LiNeS(alpha=0.3, beta=0.7), seed=seed)
    assert lines.forgetting < naive.forgetting - 0.1
    assert lines.acc1_after_task1 > 0.8


def test_lines_state_round_trip() -> None:
    model = nn.Linear(2, 2)
    method = LiNeS()
    method.before_task(_Ctx(model))  # type: ignore[arg-type]
    state = method.state_dict()
    restored = LiNeS()
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)
