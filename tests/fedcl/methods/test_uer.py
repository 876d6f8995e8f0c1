"""Unbias Experience Replay: cosine / dot-product loss split, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods.base import TaskContext
from fedcl.methods.naive import Naive
from fedcl.methods.uer import UER
from fedcl.models import MLP
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks


def _ctx(model: torch.nn.Module, task_id: int) -> TaskContext:
    g = torch.Generator().manual_seed(task_id)
    return TaskContext(
        model=model,
        task_id=task_id,
        client_id=0,
        server_round=1,
        task_round=0,
        last_round_of_task=False,
        x=torch.randn(6, 3, generator=g),
        y=torch.tensor([2 * task_id, 2 * task_id + 1] * 3),
        device=torch.device("cpu"),
        num_classes=4,
        task_classes=[2 * task_id, 2 * task_id + 1],
        seen_tasks=list(range(task_id + 1)),
        global_params={},
        generator=torch.Generator().manual_seed(0),
    )


def test_loss_is_cosine_on_current_and_dot_product_on_replay() -> None:
    torch.manual_seed(0)
    model: MLP = MLP((3,), 4, hidden=[5])
    method = UER(buffer_size=50, replay_batch_size=4, scale=10.0)
    c0 = _ctx(model, 0)
    method.adapt_batch(c0.x, c0.y, c0)  # fills the buffer with task-0 samples
    c1 = _ctx(model, 1)
    bx, by = method.adapt_batch(c1.x, c1.y, c1)
    assert bx.shape[0] == 6 + 4 and set(by[6:].tolist()) <= {0, 1}
    c1.batch_x, c1.batch_y = bx, by
    logits = model(bx)
    got = method.loss(logits, by, F.cross_entropy(logits, by), c1)
    head = model.head.heads[0]
    assert isinstance(head, nn.Linear)
    w = head.weight
    feats = model.body(bx[:6])
    cos = 10.0 * F.normalize(feats, dim=1) @ F.normalize(w, dim=1).t()
    want = F.cross_entropy(cos, by[:6]) + F.cross_entropy(logits[6:], by[6:])
    assert torch.allclose(got, want)


@pytest.mark.parametrize("seed", [0, 1])
def test_uer_keeps_old_classes_better_than_naive(seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    uer = run_two_tasks(lambda: UER(buffer_size=20, replay_batch_size=8), seed=seed)
    assert uer.acc0_after_task1 > naive.acc0_after_task1 + 0.3
    assert uer.forgetting < naive.forgetting - 0.3
    assert uer.acc1_after_task1 > 0.9


def test_uer_state_round_trip() -> None:
    method = UER(buffer_size=10)
    ctx = _ctx(MLP((3,), 4, hidden=[5]), 0)
    method.adapt_batch(ctx.x, ctx.y, ctx)
    state = method.state_dict()
    restored = UER(buffer_size=10)
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)


def test_multi_head_uses_the_tasks_head_masked_and_replays_through_old_heads() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5], num_heads=2)
    method = UER(buffer_size=6, replay_batch_size=6, scale=4.0)
    c0 = _ctx(model, 0)
    c0.multi_head = True
    method.adapt_batch(c0.x, c0.y, c0)
    c1 = _ctx(model, 1)
    c1.multi_head = True
    bx, by = method.adapt_batch(c1.x, c1.y, c1)
    c1.batch_x = bx
    logits = model(bx, 1)
    got = method.loss(logits, by, F.cross_entropy(logits, by), c1)
    head = model.head.heads[1]
    assert isinstance(head, nn.Linear)
    cos = 4.0 * F.normalize(model.body(bx[:6]), dim=1) @ F.normalize(head.weight, dim=1).t()
    cos = cos + torch.tensor([float("-inf"), float("-inf"), 0.0, 0.0])
    want = F.cross_entropy(cos, by[:6]) + F.cross_entropy(model(bx[6:], 0), by[6:])
    torch.testing.assert_close(got, want)


def test_first_batch_is_cosine_only_and_zero_buffer_stores_nothing() -> None:
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5])
    method = UER(buffer_size=0, replay_batch_size=4, scale=2.0)
    c0 = _ctx(model, 0)
    bx, by = method.adapt_batch(c0.x, c0.y, c0)
    assert bx is c0.x and method.buffer.is_empty
    c0.batch_x = bx
    head = model.head.heads[0]
    assert isinstance(head, nn.Linear)
    cos = 2.0 * F.normalize(model.body(bx), dim=1) @ F.normalize(head.weight, dim=1).t()
    torch.testing.assert_close(method.loss(model(bx), by, torch.tensor(9.0), c0), F.cross_entropy(cos, by))


def test_one_sample_buffer_and_one_sample_replay_work() -> None:
    # Prepare
    c0, c1 = _ctx(MLP((3,), 4, hidden=[5]), 0), _ctx(MLP((3,), 4, hidden=[5]), 1)
    tiny, one = UER(buffer_size=1, replay_batch_size=4), UER(buffer_size=8, replay_batch_size=1)
    # Execute
    tiny.adapt_batch(c0.x, c0.y, c0)
    one.adapt_batch(c0.x, c0.y, c0)
    bx, by = one.adapt_batch(c1.x, c1.y, c1)
    # Assert: a one-slot buffer keeps a sample; a one-sample replay appends one buffered sample
    assert len(tiny.buffer) == 1
    assert bx.shape[0] == 7 and int(by[6]) in (0, 1)


def test_buffer_and_replay_draws_come_from_the_round_generator_not_the_global_rng() -> None:
    # Prepare: a buffer of 4 offered 3 batches of 6 (reservoir draws), replay draws of 2 of 4
    out = []
    for global_seed in (1, 2):
        method = UER(buffer_size=4, replay_batch_size=2)
        torch.manual_seed(global_seed)
        gen = torch.Generator().manual_seed(7)
        batches = []
        for t in (0, 1, 0):
            ctx = _ctx(MLP((3,), 4, hidden=[5]), t)
            ctx.generator = gen
            batches.append(method.adapt_batch(ctx.x, ctx.y, ctx)[0])
        out.append((method.buffer.x.clone(), torch.cat(batches)))  # type: ignore[union-attr]
    # Assert
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_single_head_replay_takes_the_training_pass_logits_without_a_second_forward() -> None:
    # Prepare: a replay batch on a single-head model; count whole-model forward passes
    torch.manual_seed(0)
    model: MLP = MLP((3,), 4, hidden=[5])
    method = UER(buffer_size=50, replay_batch_size=4)
    c0 = _ctx(model, 0)
    method.adapt_batch(c0.x, c0.y, c0)
    c1 = _ctx(model, 1)
    c1.batch_x, c1.batch_y = method.adapt_batch(c1.x, c1.y, c1)
    logits = model(c1.batch_x)
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    # Execute
    method.loss(logits, c1.batch_y, F.cross_entropy(logits, c1.batch_y), c1)
    # Assert: only the body ran again (for the cosine logits of the current samples); dropout or batch-norm
    # layers would make a second pass differ from the one the optimiser steps on
    assert calls == []
