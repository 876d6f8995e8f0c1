"""Helpers shared by the methods: flat gradients, snapshots, per-task replay logits."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods._utils import assign_flat_grad, empirical_fisher, flat_grad, logits_by_task, snapshot, trainable
from fedcl.models import MLP
from fedcl.trainer import task_logits
from tests.fedcl.methods.toy import make_ctx


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


def _squared_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int, classes: list[int]) -> list[dict]:
    """Per-sample squared gradients of the masked task-head cross-entropy, one dict per row (zeros if unused)."""
    out = []
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(task_logits(model, x[i : i + 1], task, True, classes), y[i : i + 1]).backward()
        out.append({n: (p.grad.detach() ** 2 if p.grad is not None else torch.zeros_like(p))
                    for n, p in model.named_parameters()})
    model.zero_grad()
    return out


def test_empirical_fisher_is_the_mean_of_squared_per_sample_gradients_of_the_tasks_masked_head() -> None:
    # Prepare: a two-head model on task 1 (classes 2, 3); head 0 takes no part in the loss
    torch.manual_seed(0)
    model = MLP((5,), 4, hidden=[3], num_heads=2)
    x, y = torch.randn(3, 5), torch.tensor([2, 3, 3])
    per_sample = _squared_grads(model, x, y, 1, [2, 3])
    # Execute: more samples allowed than the three rows (and than the five features)
    got = empirical_fisher(make_ctx(model, 1, x, y, multi_head=True), max_samples=100)
    # Assert
    for name, _ in model.named_parameters():
        torch.testing.assert_close(got[name], sum(g[name] for g in per_sample) / 3)
    assert all(float(f.abs().sum()) == 0.0 for n, f in got.items() if n.startswith("head.heads.0"))


def test_empirical_fisher_draws_its_samples_from_the_rounds_generator() -> None:
    # Prepare: one sample of six; the global RNG is watched
    torch.manual_seed(0)
    model = MLP((5,), 4, hidden=[3], num_heads=2)
    x, y = torch.randn(6, 5), torch.tensor([2, 3, 3, 2, 2, 3])
    per_sample = _squared_grads(model, x, y, 1, [2, 3])
    ctx = make_ctx(model, 1, x, y, multi_head=True, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    # Execute
    got = empirical_fisher(ctx, max_samples=1)
    # Assert: the row the generator picks, undivided, and the global stream untouched
    row = int(torch.randperm(6, generator=torch.Generator().manual_seed(7))[0])
    for name, _ in model.named_parameters():
        torch.testing.assert_close(got[name], per_sample[row][name])
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1))
