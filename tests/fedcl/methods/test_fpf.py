"""FPF / k-FPF / k-FPF-KD: a plugin on any method, selected modules only, periodic over the stream, KD loss."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from fedcl.methods import build_method
from fedcl.methods.base import CLMethod, TaskContext
from fedcl.methods.compose import Composite
from fedcl.methods.derpp import DERPP
from fedcl.methods.er import ER
from fedcl.methods.fpf import FPF, KFPF, KFPFKD, default_modules, select_parameters
from fedcl.methods.naive import Naive
from fedcl.models import MLP
from fedcl.trainer import task_logits, train_local
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks, sgd


def _ctx(model: torch.nn.Module, n: int = 16, task_id: int = 0, last: bool = True) -> TaskContext:
    g = torch.Generator().manual_seed(task_id)
    return TaskContext(
        model=model,
        task_id=task_id,
        client_id=0,
        server_round=1 + task_id,
        task_round=0,
        last_round_of_task=last,
        x=torch.randn(n, 3, generator=g),
        y=torch.randint(0, 4, (n,), generator=g),
        device=torch.device("cpu"),
        num_classes=4,
        task_classes=[0, 1, 2, 3],
        seen_tasks=list(range(task_id + 1)),
        global_params={},
        generator=torch.Generator().manual_seed(0),
    )


def _fill(method: FPF, ctx: TaskContext, logits: torch.Tensor | None = None) -> None:
    """Offer the whole of ``ctx.x, ctx.y`` to the plugin's buffer, as one training batch does."""
    ctx.batch_x, ctx.batch_y, ctx.fresh_rows = ctx.x, ctx.y, int(ctx.y.shape[0])
    out = logits if logits is not None else ctx.model(ctx.x)
    method.loss(out, ctx.y, torch.tensor(0.0), ctx)


def test_default_modules_and_selection() -> None:
    model = MLP((3,), 4, hidden=[5, 6])
    assert default_modules(model) == ["head", "body.3"]
    names = {id(p): n for n, p in model.named_parameters()}
    chosen = {names[id(p)] for p in select_parameters(model, ["head", "body.3"])}
    assert chosen == {"body.3.weight", "body.3.bias", "head.heads.0.weight", "head.heads.0.bias"}


def test_task_end_finetuning_moves_only_the_selected_modules() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5, 6])
    method = FPF(buffer_size=16, steps=5, lr=0.5)
    ctx = _ctx(model)
    _fill(method, ctx)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    method.after_task(ctx)
    for k, v in model.named_parameters():
        moved = not torch.equal(v, before[k])
        assert moved == (k.startswith("head.") or k.startswith("body.3.")), k
    assert ctx.metrics["fpf-finetunes"] == 1.0


def test_task_end_finetuning_is_sgd_on_the_buffer_loss_by_hand() -> None:
    # Prepare: batch = the whole buffer, so the buffer loss does not depend on the draw
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5, 6])
    method = FPF(buffer_size=16, steps=2, lr=0.5, batch_size=16, modules=["head"])
    ctx = _ctx(model)
    _fill(method, ctx)
    ref = copy.deepcopy(model)
    for _ in range(2):  # two SGD steps of lr 0.5 on the CE of the 16 samples, head only
        head = [p for n, p in ref.named_parameters() if n.startswith("head.")]
        grads = torch.autograd.grad(F.cross_entropy(ref(ctx.x), ctx.y), head)
        with torch.no_grad():
            for p, g in zip(head, grads, strict=True):
                p.sub_(0.5 * g)
    # Execute
    method.after_backward(ctx)  # nothing per step
    method.after_task(ctx)
    # Assert: the head took exactly those two steps, the body did not move
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), msg=name)


def test_kd_finetuning_loss_is_ce_plus_weighted_mse_to_the_stored_logits() -> None:
    # Prepare: stored logits are a known tensor (not the model's output), so the MSE term is not zero
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5])
    method = KFPFKD(buffer_size=16, batch_size=16, kd_weight=0.7)
    ctx = _ctx(model)
    stored = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    ctx.multi_head = False
    _fill(method, ctx, logits=stored)
    # Execute
    got = method.buffer_loss(ctx)
    # Assert: the buffer is the 16 samples in draw order; CE + 0.7 MSE over them
    order = method.buffer.sample(16, generator=torch.Generator().manual_seed(0))["index"]
    out = model(ctx.x[order])
    want = F.cross_entropy(out, ctx.y[order]) + 0.7 * F.mse_loss(out, stored[order])
    torch.testing.assert_close(got, want)
    # k-FPF (CE only) stores no logits and its loss is the cross-entropy alone
    ce_only = KFPF(buffer_size=16, batch_size=16)
    _fill(ce_only, ctx, logits=stored)
    assert not ce_only.buffer.has_logits
    torch.testing.assert_close(ce_only.buffer_loss(ctx), F.cross_entropy(out, ctx.y[order]))


def test_kd_on_a_multi_head_model_stores_the_raw_head_output_and_finetunes_through_it() -> None:
    # Prepare: task 1 of a two-head model; the trainer hands the plugin logits masked to -inf outside [2, 3]
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5], num_heads=2)
    method = KFPFKD(buffer_size=16, batch_size=16, kd_weight=0.5)
    ctx = _ctx(model, task_id=1)
    ctx.multi_head, ctx.task_classes = True, [2, 3]
    ctx.y = ctx.y % 2 + 2
    masked = task_logits(model, ctx.x, 1, True, [2, 3])
    # Execute
    _fill(method, ctx, logits=masked)
    got = method.buffer_loss(ctx)
    # Assert: the stored logits are head 1's raw output (finite), and the loss goes through head 1, unmasked
    assert method.buffer.logits is not None
    torch.testing.assert_close(method.buffer.logits, model(ctx.x, 1).detach())
    order = method.buffer.sample(16, generator=torch.Generator().manual_seed(0))["index"]
    out = model(ctx.x[order], 1)
    want = F.cross_entropy(out, ctx.y[order]) + 0.5 * F.mse_loss(out, model(ctx.x, 1).detach()[order])
    torch.testing.assert_close(got, want)


class _Counter(KFPF):
    """k-FPF that records the local step at which each fine-tuning ran."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.at: list[int] = []

    def finetune(self, ctx: TaskContext) -> None:
        self.at.append(self.step_count)
        super().finetune(ctx)


def test_kfpf_fires_every_n_local_steps_across_rounds_and_task_boundaries() -> None:
    # Prepare: 3 rounds of 2 tasks, 40 samples / batch 16 = 3 steps per round; every = 4
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5])
    state: dict[str, Any] = {}
    fired: list[int] = []
    # Execute: a fresh method object each round, restored from the previous round's state (as the client app)
    for task in range(2):
        for r in range(3):
            method = _Counter(buffer_size=50, every=4, steps=1)
            method.load_state_dict(state)
            ctx = _ctx(model, n=40, task_id=task, last=r == 2)
            train_local(method, ctx, sgd(0.05, 16))
            if ctx.last_round_of_task:
                method.after_task(ctx)
            fired += method.at
            state = method.state_dict()
    # Assert: 18 steps -> fine-tunings after steps 4, 8, 12, 16 (the task boundary at 9 changes nothing),
    # none at the task ends
    assert fired == [4, 8, 12, 16]
    assert state["step_count"] == 18 and state["finetunes"] == 4


def test_fpf_plugin_on_derpp_leaves_derpp_alone_during_training_and_finetunes_at_task_end() -> None:
    # Prepare: the same model and draws for DER++ alone and DER++ + FPF (FPF's buffer is not full: no draw)
    def train(method: CLMethod) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = MLP((3,), 4, hidden=[5, 6])
        ctx = _ctx(model, n=40)
        train_local(method, ctx, sgd(0.05, 16))
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        method.after_task(ctx)
        return before, {k: v.detach().clone() for k, v in model.named_parameters()}

    alone_before, alone_after = train(DERPP(buffer_size=50))
    # Execute
    both_before, both_after = train(Composite({"derpp": DERPP(buffer_size=50), "fpf": FPF(buffer_size=50, lr=0.5)}))
    # Assert: training is DER++'s bit for bit; at the task end only the head and the last body layer move
    assert all(torch.equal(alone_before[k], both_before[k]) for k in alone_before)
    assert all(torch.equal(alone_after[k], alone_before[k]) for k in alone_after)  # DER++ alone: nothing at task end
    moved = {k for k in both_after if not torch.equal(both_after[k], both_before[k])}
    assert moved == {"body.3.weight", "body.3.bias", "head.heads.0.weight", "head.heads.0.bias"}


def test_plugin_stores_only_the_rounds_own_rows_not_another_methods_replay() -> None:
    # Prepare: ER appends 8 replay rows to each batch; FPF comes after it in the composition
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5])
    er = ER(buffer_size=100, replay_batch_size=8)
    fpf = FPF(buffer_size=100)
    ctx = _ctx(model, n=40)
    # Execute: two epochs (ER's buffer is full of round samples by the second)
    train_local(Composite({"er": er, "fpf": fpf}), ctx, sgd(0.05, 16, local_epochs=2))
    # Assert: every round sample offered once per epoch, no replayed row
    assert fpf.buffer.seen == 80 and len(fpf.buffer) == 80


@pytest.mark.parametrize("make", [lambda: FPF(buffer_size=50, steps=50), lambda: KFPF(buffer_size=50, every=5),
                                  lambda: KFPFKD(buffer_size=50, every=5)], ids=["fpf", "kfpf", "kfpf_kd"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fpf_variants_on_sgd_forget_less_than_naive(make: Any, seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    fpf = run_two_tasks(make, seed=seed)
    assert fpf.forgetting < naive.forgetting - 0.25
    assert fpf.acc1_after_task1 > 0.9


def test_fpf_ablation_finetuning_is_what_helps() -> None:
    # the plugin with a learning rate of 0 is naive SGD bit for bit (a buffer that never fills draws nothing)
    naive = run_two_tasks(Naive, seed=0)
    assert run_two_tasks(lambda: FPF(buffer_size=5000, steps=1, lr=0.0), seed=0) == naive
    # the same buffer with and without the fine-tuning: the fine-tuning is what keeps task 0
    off = run_two_tasks(lambda: FPF(buffer_size=50, steps=50, lr=0.0), seed=0)
    on = run_two_tasks(lambda: FPF(buffer_size=50, steps=50), seed=0)
    assert on.forgetting < off.forgetting - 0.25


def test_fpf_state_round_trip() -> None:
    method = KFPFKD(buffer_size=10)
    ctx = _ctx(MLP((3,), 4, hidden=[5]))
    _fill(method, ctx)
    method.step_count, method.finetunes = 7, 2
    state = method.state_dict()
    restored = KFPFKD(buffer_size=10)
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)


def test_bad_options_are_errors_and_an_empty_buffer_finetunes_nothing() -> None:
    for kw in ({"steps": 0}, {"batch_size": 0}, {"every": 0}, {"kd_weight": -1.0}):
        with pytest.raises(ValueError, match="fpf"):
            FPF(**kw)
    model = MLP((3,), 4, hidden=[5])
    before = [p.detach().clone() for p in model.parameters()]
    empty = FPF(buffer_size=0)
    ctx = _ctx(model)
    _fill(empty, ctx)
    empty.after_task(ctx)
    assert empty.buffer.is_empty and empty.finetunes == 0
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_compositions_with_fpf_build_from_the_config_names() -> None:
    method = build_method({"derpp": {}, "fpf": {}})
    assert isinstance(method, Composite) and list(method.parts) == ["derpp", "fpf"]
    assert isinstance(build_method({"kfpf": {}}), KFPF)


def test_default_modules_take_the_last_parametrised_body_layer_or_only_the_head() -> None:
    # Prepare: a body whose last layer has no bias, and a model with no body parameters at all
    with_body = torch.nn.Module()
    with_body.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4, bias=False))
    with_body.head = torch.nn.Linear(4, 2)
    head_only = torch.nn.Module()
    head_only.body = torch.nn.ReLU()
    head_only.head = torch.nn.Linear(3, 2)
    # Execute / Assert
    assert default_modules(with_body) == ["head", "body.2"]
    assert default_modules(head_only) == ["head"]


def test_edge_options_are_accepted_and_a_fresh_plugin_has_taken_no_step() -> None:
    # batch_size 1 and every 1 are the smallest valid values; the step count starts at 0
    method = FPF(batch_size=1, every=1)
    assert (method.batch_size, method.every) == (1, 1)
    assert method.state_dict()["step_count"] == 0 and method.state_dict()["finetunes"] == 0


def test_variants_keep_the_modules_and_task_end_switch_they_are_given() -> None:
    for cls in (KFPF, KFPFKD):
        method = cls(modules=["head"], at_task_end=True)
        assert method.modules == ["head"] and method.at_task_end is True


def test_one_slot_buffer_and_a_batch_without_fresh_rows_are_stored() -> None:
    # Prepare: fresh_rows unset means the whole batch is the round's own data
    model = MLP((3,), 4, hidden=[5])
    ctx = _ctx(model, n=6)
    one, whole = FPF(buffer_size=1), FPF(buffer_size=10)
    ctx.batch_x, ctx.batch_y, ctx.fresh_rows = ctx.x, ctx.y, None
    # Execute
    for method in (one, whole):
        method.loss(model(ctx.x), ctx.y, torch.tensor(0.0), ctx)
    # Assert
    assert len(one.buffer) == 1 and len(whole.buffer) == 6 and whole.buffer.seen == 6


def test_zero_buffer_counts_nothing() -> None:
    model = MLP((3,), 4, hidden=[5])
    method = FPF(buffer_size=0)
    _fill(method, _ctx(model))
    assert method.buffer.seen == 0 and method.buffer.is_empty


def test_buffer_and_finetuning_draws_come_from_the_rounds_generator() -> None:
    # Prepare: twice the buffer's capacity offered (reservoir draws), then one fine-tuning (batch draws)
    def run(global_seed: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = MLP((3,), 4, hidden=[5])
        method = FPF(buffer_size=8, batch_size=4, steps=3)
        ctx = _ctx(model, n=16)
        torch.manual_seed(global_seed)
        _fill(method, ctx)
        method.finetune(ctx)
        assert method.buffer.x is not None
        return [method.buffer.x.clone(), *[p.detach().clone() for p in model.parameters()]]

    # Execute: the same round generator, different global RNG states
    a, b = run(1), run(2)
    # Assert
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_samples_stored_without_logits_are_finetuned_on_cross_entropy_only() -> None:
    # Prepare: a buffer filled by a plugin without distillation, restored into k-FPF-KD
    model = MLP((3,), 4, hidden=[5])
    plain = FPF(buffer_size=16, batch_size=16)
    ctx = _ctx(model)
    _fill(plain, ctx)
    kd = KFPFKD(buffer_size=16, batch_size=16)
    kd.load_state_dict(plain.state_dict())
    # Execute
    got = kd.buffer_loss(ctx)
    # Assert
    order = kd.buffer.sample(16, generator=torch.Generator().manual_seed(0))["index"]
    torch.testing.assert_close(got, F.cross_entropy(model(ctx.x[order]), ctx.y[order]))


def test_buffer_loss_runs_on_the_run_device() -> None:
    # Prepare: the meta device stands in for an accelerator (shapes only); the buffer stays on the CPU
    model = MLP((3,), 4, hidden=[5])
    method = KFPFKD(buffer_size=16, batch_size=4)
    ctx = _ctx(model)
    _fill(method, ctx)
    ctx.model, ctx.device = model.to("meta"), torch.device("meta")
    # Execute / Assert
    assert method.buffer_loss(ctx).device.type == "meta"


def test_finetuning_skips_selected_parameters_the_buffer_loss_does_not_use() -> None:
    # Prepare: a two-head model; the buffer only holds task-0 samples, so head 1 gets no gradient
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5], num_heads=2)
    method = FPF(buffer_size=16, batch_size=8, steps=2, modules=["head"])
    ctx = _ctx(model)
    ctx.multi_head = True
    _fill(method, ctx, logits=model(ctx.x, 0))
    head1 = [p.detach().clone() for p in model.head.heads[1].parameters()]
    head0 = [p.detach().clone() for p in model.head.heads[0].parameters()]
    # Execute
    method.finetune(ctx)
    # Assert: head 0 moved, head 1 untouched
    assert all(torch.equal(p, q) for p, q in zip(model.head.heads[1].parameters(), head1, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(model.head.heads[0].parameters(), head0, strict=True))
