"""A-GEM: gradient projection, task-end memory, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedcl.methods._utils import flat_grad
from fedcl.methods.agem import AGEM
from fedcl.methods.base import TaskContext
from fedcl.trainer import train_local
from tests.fedcl.methods.baselines import naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx, make_model, run_two_tasks, sgd, toy_task


def test_projected_gradient_does_not_conflict_with_memory() -> None:
    model = make_model(0)
    x0, y0 = toy_task(0, 64, seed=0)
    x1, y1 = toy_task(1, 32, seed=0)
    method = AGEM(buffer_size=64, ref_batch_size=64)
    method.buffer.add(x0, y0, torch.zeros_like(y0), generator=torch.Generator().manual_seed(0))
    ctx = TaskContext(
        model=model, task_id=1, client_id=0, server_round=1, task_round=0, last_round_of_task=False,
        x=x1, y=y1, device=torch.device("cpu"), num_classes=4, task_classes=[2, 3], seen_tasks=[0, 1],
        global_params={}, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    params = list(model.parameters())
    F.cross_entropy(model(x1), y1).backward()
    g = flat_grad(params)
    ref = torch.autograd.grad(F.cross_entropy(model(x0), y0), params)
    g_ref = torch.cat([r.reshape(-1) for r in ref])
    assert torch.dot(g, g_ref) < 0  # learning task 1 hurts task 0 here
    method.after_backward(ctx)
    g_new = flat_grad(params)
    assert torch.dot(g_new, g_ref).abs() < 1e-5  # projected onto the plane orthogonal to g_ref
    assert ctx.metrics["agem-projected"] == 1.0


def test_memory_holds_finished_tasks_only() -> None:
    _, method = run_capture(AGEM, {"buffer_size": 100}, seed=0)
    assert isinstance(method, AGEM)
    assert len(method.buffer) == 100 and method.buffer.seen == 800  # two tasks of 400, at task end
    assert method.buffer.task_ids is not None and set(method.buffer.task_ids.tolist()) == {0, 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_agem_forgets_less_than_naive(seed: int) -> None:
    naive = naive_toy(seed)
    agem, _ = run_capture(AGEM, {"buffer_size": 200, "ref_batch_size": 64}, seed=seed)
    assert agem.forgetting < naive.forgetting - 0.3
    assert agem.acc1_after_task1 > 0.9


def test_agem_state_round_trip() -> None:
    _, method = run_capture(AGEM, {"buffer_size": 50}, seed=0)
    restored = AGEM(buffer_size=50)
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


class _MemoryProbe(AGEM):
    """A-GEM that checks, at every step, that its memory holds no sample of the task being learnt."""

    checked: list[int] = []

    def after_backward(self, ctx: TaskContext) -> None:
        self._check(ctx)
        super().after_backward(ctx)
        self._check(ctx)

    def _check(self, ctx: TaskContext) -> None:
        tids = self.buffer.task_ids
        assert tids is None or ctx.task_id not in tids.tolist(), f"task {ctx.task_id} samples in the memory"
        _MemoryProbe.checked.append(ctx.task_id)


def test_memory_never_holds_the_current_task_during_training() -> None:
    # Prepare / Execute: two tasks, three rounds each, the method rebuilt from its state every round
    _MemoryProbe.checked = []
    run_two_tasks(lambda: _MemoryProbe(buffer_size=30, ref_batch_size=16), rounds_per_task=3, epochs=1, n=64)
    # Assert: every step of both tasks was checked (2 steps per epoch, 3 rounds, 2 checks per step)
    assert _MemoryProbe.checked.count(0) == 12 and _MemoryProbe.checked.count(1) == 12


def test_task_end_fills_the_memory_and_first_task_is_never_projected() -> None:
    # Prepare
    model = make_model(0)
    x0, y0 = toy_task(0, 40, seed=0)
    method = AGEM(buffer_size=30, ref_batch_size=16)
    ctx = make_ctx(model, 0, x0, y0)
    # Execute / Assert: before_task and training leave the memory empty, nothing projected
    method.before_task(ctx)
    assert method.buffer.is_empty
    train_local(method, ctx, sgd(0.05, 16))
    # reported as 0 even with an empty memory: every client of a SecAgg+ round sends the same metric keys
    assert method.buffer.is_empty and ctx.metrics["agem-projected"] == 0.0
    method.after_task(ctx)
    assert len(method.buffer) == 30 and method.buffer.seen == 40
    assert method.buffer.task_ids is not None and set(method.buffer.task_ids.tolist()) == {0}
    # every stored sample is one of task 0's (a random subset, labels kept with their inputs)
    assert method.buffer.x is not None and method.buffer.y is not None
    for xi, yi in zip(method.buffer.x, method.buffer.y, strict=True):
        row = (x0 == xi).all(dim=1).nonzero()
        assert row.numel() == 1 and int(y0[row[0, 0]]) == int(yi)


def test_no_projection_without_conflict() -> None:
    # the memory's gradient and the current one agree (same task data): the gradient is left alone
    model = make_model(0)
    x0, y0 = toy_task(0, 32, seed=0)
    method = AGEM(buffer_size=32, ref_batch_size=32)
    method.buffer.add(x0, y0, torch.zeros_like(y0))
    ctx = make_ctx(model, 0, x0, y0)
    F.cross_entropy(model(x0), y0).backward()
    before = flat_grad(list(model.parameters())).clone()
    method.after_backward(ctx)
    assert torch.equal(flat_grad(list(model.parameters())), before)
    assert ctx.metrics["agem-projected"] == 0.0


def test_projection_is_exactly_g_minus_its_component_along_g_ref() -> None:
    model = make_model(0)
    x0, y0 = toy_task(0, 64, seed=0)
    x1, y1 = toy_task(1, 32, seed=0)
    method = AGEM(buffer_size=64, ref_batch_size=64)  # the whole memory: g_ref is the memory's full gradient
    method.buffer.add(x0, y0, torch.zeros_like(y0))
    ctx = make_ctx(model, 1, x1, y1)
    params = list(model.parameters())
    F.cross_entropy(model(x1), y1).backward()
    g = flat_grad(params).clone()
    g_ref = torch.cat([r.reshape(-1) for r in torch.autograd.grad(F.cross_entropy(model(x0), y0), params)])
    method.after_backward(ctx)
    torch.testing.assert_close(flat_grad(params), g - torch.dot(g, g_ref) / torch.dot(g_ref, g_ref) * g_ref)
    disabled = AGEM(buffer_size=64, ref_batch_size=0)  # a full memory, but no reference batch
    disabled.buffer.add(x0, y0, torch.zeros_like(y0))
    before = flat_grad(params).clone()
    disabled.after_backward(ctx)
    assert torch.equal(flat_grad(params), before)
