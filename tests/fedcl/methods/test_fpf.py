"""FPF / k-FPF: only the selected modules move, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch

from fedcl.methods.base import TaskContext
from fedcl.methods.fpf import FPF, default_modules, select_parameters
from fedcl.methods.naive import Naive
from fedcl.models import MLP
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks


def _ctx(model: torch.nn.Module) -> TaskContext:
    return TaskContext(
        model=model,
        task_id=0,
        client_id=0,
        server_round=1,
        task_round=0,
        last_round_of_task=True,
        x=torch.randn(16, 3),
        y=torch.randint(0, 4, (16,)),
        device=torch.device("cpu"),
        num_classes=4,
        task_classes=[0, 1, 2, 3],
        seen_tasks=[0],
        global_params={},
        generator=torch.Generator().manual_seed(0),
    )


def test_default_modules_and_selection() -> None:
    model = MLP((3,), 4, hidden=[5, 6])
    assert default_modules(model) == ["head", "body.3"]
    names = {id(p): n for n, p in model.named_parameters()}
    chosen = {names[id(p)] for p in select_parameters(model, ["head", "body.3"])}
    assert chosen == {"body.3.weight", "body.3.bias", "head.heads.0.weight", "head.heads.0.bias"}


def test_kfpf_finetunes_only_selected_modules() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5, 6])
    method = FPF(buffer_size=16, mode="kfpf", k=5, lr=0.5)
    ctx = _ctx(model)
    method.adapt_batch(ctx.x, ctx.y, ctx)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    method.after_task(ctx)
    for k, v in model.named_parameters():
        moved = not torch.equal(v, before[k])
        assert moved == (k.startswith("head.") or k.startswith("body.3.")), k


@pytest.mark.parametrize("mode", ["fpf", "kfpf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fpf_forgets_less_than_naive(mode: str, seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    fpf = run_two_tasks(lambda: FPF(buffer_size=50, mode=mode, k=50, lr=0.05), seed=seed)
    assert fpf.forgetting < naive.forgetting - 0.25
    assert fpf.acc1_after_task1 > 0.9


def test_fpf_state_round_trip() -> None:
    method = FPF(buffer_size=10)
    ctx = _ctx(MLP((3,), 4, hidden=[5]))
    method.adapt_batch(ctx.x, ctx.y, ctx)
    state = method.state_dict()
    restored = FPF(buffer_size=10)
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)


def test_fpf_mode_steps_the_selected_modules_by_hand_every_backward() -> None:
    # Prepare: a buffer of 16 samples, batch 16 (the whole buffer: the buffer loss does not depend on the draw)
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5, 6])
    method = FPF(buffer_size=16, mode="fpf", lr=0.5, batch_size=16, modules=["head"])
    ctx = _ctx(model)
    method.adapt_batch(ctx.x, ctx.y, ctx)
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(ctx.x), ctx.y), head)
    want = [p.detach() - 0.5 * g for p, g in zip(head, grads, strict=True)]
    body = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("body.")}
    # Execute
    method.after_backward(ctx)
    # Assert: one SGD step of lr 0.5 on the buffer loss, for the head only
    for p, w in zip(head, want, strict=True):
        torch.testing.assert_close(p.detach(), w)
    assert all(torch.equal(p, body[n]) for n, p in model.named_parameters() if n in body)
    method.after_task(ctx)  # fpf mode: no task-end fine-tuning
    for p, w in zip(head, want, strict=True):
        torch.testing.assert_close(p.detach(), w)


def test_kfpf_does_nothing_per_step_and_an_unknown_mode_is_an_error() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5])
    method = FPF(buffer_size=16, mode="kfpf")
    ctx = _ctx(model)
    method.adapt_batch(ctx.x, ctx.y, ctx)
    before = [p.detach().clone() for p in model.parameters()]
    method.after_backward(ctx)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert len(method.buffer) == 16
    with pytest.raises(ValueError, match="mode"):
        FPF(mode="other")
    empty = FPF(buffer_size=0)
    empty.adapt_batch(ctx.x, ctx.y, ctx)
    empty.after_task(ctx)  # nothing stored, nothing to fine-tune on
    assert empty.buffer.is_empty
