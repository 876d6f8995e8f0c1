"""A-GEM: gradient projection, task-end memory, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedcl.methods._utils import assign_flat_grad, flat_grad
from fedcl.methods.agem import AGEM
from fedcl.methods.base import TaskContext
from fedcl.models import MLP
from fedcl.trainer import train_local
from tests.fedcl.methods.baselines import naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx, make_model, run_two_tasks, sgd, toy_task


def _memory_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The flat gradient of the cross-entropy on ``(x, y)`` (zeros for parameters it does not use); no ``.grad`` set."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params,
                                                                                              strict=True)])


def _full_memory(n: int) -> tuple[torch.nn.Module, AGEM, torch.Tensor, torch.Tensor]:
    """A model and an A-GEM whose memory holds ``n`` task-0 samples, all of them in every reference batch."""
    model = make_model(0)
    x0, y0 = toy_task(0, n, seed=0)
    method = AGEM(buffer_size=n, ref_batch_size=n)
    method.buffer.add(x0, y0, torch.zeros_like(y0))
    return model, method, x0, y0


def _with_grad(model: torch.nn.Module, flat: torch.Tensor) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    assign_flat_grad(params, flat.clone())
    return params


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
    g_ref = _memory_gradient(model, x0, y0)
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
    g_ref = _memory_gradient(model, x0, y0)
    method.after_backward(ctx)
    torch.testing.assert_close(flat_grad(params), g - torch.dot(g, g_ref) / torch.dot(g_ref, g_ref) * g_ref)
    disabled = AGEM(buffer_size=64, ref_batch_size=0)  # a full memory, but no reference batch
    disabled.buffer.add(x0, y0, torch.zeros_like(y0))
    before, drawn = flat_grad(params).clone(), ctx.generator.get_state()
    disabled.after_backward(ctx)
    assert torch.equal(flat_grad(params), before)
    assert torch.equal(ctx.generator.get_state(), drawn)  # and no draw from the round's generator


# ---- hand-built gradients: the projection rule, its threshold, its count, its randomness ------------------------
def test_projection_divides_by_the_reference_norm_also_when_it_is_below_one() -> None:
    # Prepare: tiny inputs, so the memory's gradient is mostly the output bias's (|g_ref|^2 < 1), and g = -g_ref + h
    model = make_model(0)
    x0, y0 = toy_task(0, 16, seed=0)
    x0 = x0 * 1e-3
    method = AGEM(buffer_size=16, ref_batch_size=16)
    method.buffer.add(x0, y0, torch.zeros_like(y0))
    g_ref = _memory_gradient(model, x0, y0)
    assert float(g_ref @ g_ref) < 0.5  # the case under test
    h = torch.randn(g_ref.numel(), generator=torch.Generator().manual_seed(3))
    g = -g_ref + h
    params = _with_grad(model, g)
    # Execute
    method.after_backward(make_ctx(model, 1, x0, y0))
    # Assert: exactly g - (g . g_ref / g_ref . g_ref) g_ref, and the result no longer conflicts
    expected = g - (g @ g_ref) / (g_ref @ g_ref) * g_ref
    torch.testing.assert_close(flat_grad(params), expected, rtol=1e-5, atol=1e-7)
    assert abs(float(flat_grad(params) @ g_ref)) < 1e-4


@pytest.mark.parametrize("agreement", [0.0, 0.5])
def test_a_gradient_that_does_not_conflict_is_left_alone_and_not_counted(agreement: float) -> None:
    # Prepare: g . g_ref = agreement exactly (0: a zero gradient; 0.5: a small positive agreement)
    model, method, x0, y0 = _full_memory(16)
    g_ref = _memory_gradient(model, x0, y0).double()
    g = (agreement / (g_ref @ g_ref) * g_ref).float()
    params = _with_grad(model, g)
    ctx = make_ctx(model, 1, x0, y0)
    # Execute
    method.after_backward(ctx)
    # Assert
    assert torch.equal(flat_grad(params), g)
    assert ctx.metrics["agem-projected"] == 0.0


def test_every_projected_step_is_counted() -> None:
    # Prepare: two steps whose gradient is the negated memory gradient (always a conflict)
    model, method, x0, y0 = _full_memory(16)
    ctx = make_ctx(model, 1, x0, y0)
    # Execute
    for _ in range(2):
        _with_grad(model, -_memory_gradient(model, x0, y0))
        method.after_backward(ctx)
    # Assert
    assert ctx.metrics["agem-projected"] == 2.0


def test_a_parameter_the_memory_loss_does_not_use_keeps_its_gradient() -> None:
    # Prepare: a parameter outside the forward pass (a multi-head model's other heads): no reference gradient
    model, method, x0, y0 = _full_memory(16)
    model.register_parameter("unused", torch.nn.Parameter(torch.zeros(3)))
    g_ref = _memory_gradient(model, x0, y0)  # zeros in the unused parameter's slots
    params = _with_grad(model, -g_ref)
    model.unused.grad = torch.tensor([1.0, 2.0, 3.0])
    g = flat_grad(params).clone()
    # Execute
    method.after_backward(make_ctx(model, 1, x0, y0))
    # Assert: projected like the others, and the unused parameter's slots unchanged
    torch.testing.assert_close(flat_grad(params), g - (g @ g_ref) / (g_ref @ g_ref) * g_ref)
    assert torch.equal(model.unused.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_memory_and_reference_batches_come_from_the_round_generator_not_the_global_rng() -> None:
    # Prepare: 40 samples offered to a memory of 16 (a random subset), 8 of 16 drawn as the reference batch
    x0, y0 = toy_task(0, 40, seed=0)
    results = []
    for global_seed in (1, 2):
        model = make_model(0)
        method = AGEM(buffer_size=16, ref_batch_size=8)
        torch.manual_seed(global_seed)
        method.after_task(make_ctx(model, 0, x0, y0, generator=torch.Generator().manual_seed(7)))
        params = _with_grad(model, -_memory_gradient(model, x0, y0))
        method.after_backward(make_ctx(model, 1, x0, y0, generator=torch.Generator().manual_seed(8)))
        results.append((method.buffer.x.clone(), flat_grad(params).clone()))  # type: ignore[union-attr]
    # Assert: the global RNG's state changes nothing
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_a_one_sample_reference_batch_projects() -> None:
    # Prepare: one sample in memory, the current gradient exactly against it
    model, method, x0, y0 = _full_memory(1)
    g_ref = _memory_gradient(model, x0, y0)
    x1, y1 = toy_task(1, 4, seed=0)
    params = _with_grad(model, -g_ref + 0.0)
    # Execute
    method.after_backward(make_ctx(model, 1, x1, y1))
    # Assert: all of -g_ref lies along g_ref, so nothing is left
    torch.testing.assert_close(flat_grad(params), torch.zeros_like(g_ref), atol=1e-6, rtol=0)


def test_multi_head_reference_goes_through_each_samples_own_head() -> None:
    # Prepare: a two-head model; the memory holds task-0 samples, the client learns task 1
    torch.manual_seed(0)
    model = MLP((16,), 4, hidden=[8], num_heads=2)
    x0, y0 = toy_task(0, 8, seed=0)
    method = AGEM(buffer_size=8, ref_batch_size=8)
    method.buffer.add(x0, y0, torch.zeros_like(y0))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(model(x0, 0), y0), params, allow_unused=True)
    g_ref = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params,
                                                                                              strict=True)])
    _with_grad(model, -g_ref + 0.0)
    x1, y1 = toy_task(1, 4, seed=0)
    ctx = make_ctx(model, 1, x1, y1, multi_head=True)
    # Execute
    method.after_backward(ctx)
    # Assert: projected against head 0's memory gradient, so nothing is left
    torch.testing.assert_close(flat_grad(params), torch.zeros_like(g_ref), atol=1e-6, rtol=0)
    assert ctx.metrics["agem-projected"] == 1.0
