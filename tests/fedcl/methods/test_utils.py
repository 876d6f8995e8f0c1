"""Helpers shared by the methods: flat gradients, snapshots, per-task replay logits."""

from __future__ import annotations

import torch
from torch import nn

from fedcl.methods._utils import assign_flat_grad, flat_grad, logits_by_task, snapshot, trainable
from fedcl.models import MLP


def test_flat_grad_and_its_inverse() -> None:
    a, b = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(3))
    b.grad = torch.tensor([1.0, 2.0, 3.0])
    flat = flat_grad([a, b])
    assert flat.tolist() == [0.0] * 4 + [1.0, 2.0, 3.0]  # a missing gradient counts as zeros
    assign_flat_grad([a, b], torch.arange(7.0))
    assert a.grad is not None and b.grad is not None
    assert a.grad.tolist() == [[0.0, 1.0], [2.0, 3.0]] and b.grad.tolist() == [4.0, 5.0, 6.0]


def test_snapshot_holds_detached_copies_of_trainable_parameters_only() -> None:
    model = nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    snap = snapshot(model)
    assert list(snap) == ["weight"] and [n for n, _ in trainable(model)] == ["weight"]
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(snap["weight"], model.weight) and not snap["weight"].requires_grad


def test_logits_by_task_routes_each_sample_through_its_own_head() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5], num_heads=2)
    x = torch.randn(4, 3)
    tids = torch.tensor([1, 0, 1, 0])
    out = logits_by_task(model, x, tids, multi_head=True)
    for i in range(4):
        torch.testing.assert_close(out[i], model(x[i : i + 1], int(tids[i]))[0])
    single = MLP((3,), 4, hidden=[5])
    torch.testing.assert_close(logits_by_task(single, x, tids, multi_head=False), single(x))
