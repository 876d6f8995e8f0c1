"""Experience Replay: replay mixing, buffer holds only current samples, forgetting, round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedcl.methods.base import TaskContext
from fedcl.methods.er import ER
from fedcl.models import MLP
from fedcl.trainer import task_logits
from tests.fedcl.methods.baselines import naive_multi_head, naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx, make_model, toy_task
from tests.fedcl.methods.toy_multihead import DIM as MH_DIM
from tests.fedcl.methods.toy_multihead import mh_task, run_two_tasks_multi_head


def _ctx(task_id: int) -> TaskContext:
    x, y = toy_task(task_id, 16, seed=0)
    return TaskContext(
        model=make_model(0), task_id=task_id, client_id=0, server_round=1, task_round=0,
        last_round_of_task=False, x=x, y=y, device=torch.device("cpu"), num_classes=4,
        task_classes=[2 * task_id, 2 * task_id + 1], seen_tasks=[task_id], global_params={},
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def test_adapt_batch_appends_replay_and_stores_only_current_samples() -> None:
    method = ER(buffer_size=100, replay_batch_size=5)
    c0, c1 = _ctx(0), _ctx(1)
    x0, y0 = method.adapt_batch(c0.x, c0.y, c0)
    assert torch.equal(x0, c0.x)  # empty buffer: nothing to replay yet
    x1, y1 = method.adapt_batch(c1.x, c1.y, c1)
    assert x1.shape[0] == 16 + 5 and set(y1[16:].tolist()) <= {0, 1}
    assert method.buffer.seen == 32 and len(method.buffer) == 32  # replayed samples not re-inserted
    assert method.buffer.task_ids is not None and method.buffer.task_ids.tolist() == [0] * 16 + [1] * 16


@pytest.mark.parametrize("seed", [0, 1])
def test_er_forgets_less_than_naive(seed: int) -> None:
    naive = naive_toy(seed)
    er, _ = run_capture(ER, {"buffer_size": 200, "replay_batch_size": 32}, seed=seed)
    assert er.forgetting < naive.forgetting - 0.3
    assert er.acc1_after_task1 > 0.9


def test_er_multi_head_replays_through_own_head() -> None:
    naive = naive_multi_head(0)
    er = run_two_tasks_multi_head(ER, seed=0)
    assert er.forgetting < naive.forgetting - 0.1 and er.acc1_after_task1 > 0.7


def test_er_state_round_trip() -> None:
    _, method = run_capture(ER, {"buffer_size": 50}, seed=0)
    restored = ER(buffer_size=50)
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


def _task1_batch_after_task0(replay_batch_size: int) -> tuple[MLP, ER, TaskContext, torch.Tensor, torch.Tensor]:
    """A two-head model, an ER whose buffer holds 6 task-0 samples, and a batch of 4 task-1 samples as the
    trainer hands it to ``loss``: the context, the current head's masked logits and their cross-entropy."""
    torch.manual_seed(0)
    model = MLP((MH_DIM,), 4, hidden=[8], num_heads=2)
    method = ER(buffer_size=6, replay_batch_size=replay_batch_size)
    x0, y0 = mh_task(0, 6, seed=0)
    x1, y1 = mh_task(1, 4, seed=0)
    method.adapt_batch(x0, y0, make_ctx(model, 0, x0, y0, multi_head=True))
    c1 = make_ctx(model, 1, x1, y1, multi_head=True)
    c1.batch_x, c1.batch_y = method.adapt_batch(x1, y1, c1)
    logits = task_logits(model, c1.batch_x, 1, True, [2, 3])  # what the trainer computes: the current head, masked
    return model, method, c1, logits, F.cross_entropy(logits, c1.batch_y)


def test_multi_head_loss_by_hand_replays_through_each_samples_own_head() -> None:
    # Prepare: the buffer holds 6 task-0 samples, all replayed with the task-1 batch
    model, method, c1, logits, base = _task1_batch_after_task0(replay_batch_size=6)
    x1, y1 = mh_task(1, 4, seed=0)
    assert c1.batch_x is not None and c1.batch_y is not None
    bx, by = c1.batch_x, c1.batch_y
    assert not torch.isfinite(base)  # replayed labels 0/1 are masked out of head 1
    # Execute
    got = method.loss(logits, by, base, c1)
    # Assert: current rows through head 1 (masked), replayed rows (all from task 0) through head 0
    cur = F.cross_entropy(task_logits(model, x1, 1, True, [2, 3]), y1, reduction="sum")
    rep = F.cross_entropy(model(bx[4:], 0), by[4:], reduction="sum")
    torch.testing.assert_close(got, (cur + rep) / 10)
    assert set(by[4:].tolist()) <= {0, 1}


def test_single_head_loss_is_the_trainers_joint_cross_entropy() -> None:
    method = ER(buffer_size=10, replay_batch_size=4)
    c0, c1 = _ctx(0), _ctx(1)
    method.adapt_batch(c0.x, c0.y, c0)
    bx, by = method.adapt_batch(c1.x, c1.y, c1)
    c1.batch_x = bx
    logits = c1.model(bx)
    base = F.cross_entropy(logits, by)
    assert method.loss(logits, by, base, c1) is base


def test_no_replay_and_no_memory_when_sizes_are_zero() -> None:
    c0, c1 = _ctx(0), _ctx(1)
    no_replay = ER(buffer_size=10, replay_batch_size=0)
    no_replay.adapt_batch(c0.x, c0.y, c0)
    bx, _ = no_replay.adapt_batch(c1.x, c1.y, c1)
    assert bx.shape[0] == 16 and len(no_replay.buffer) == 10 and no_replay.buffer.seen == 32
    no_memory = ER(buffer_size=0)
    no_memory.adapt_batch(c0.x, c0.y, c0)
    bx, _ = no_memory.adapt_batch(c1.x, c1.y, c1)
    assert bx.shape[0] == 16 and no_memory.buffer.is_empty


def test_replayed_rows_are_buffer_samples_with_their_labels() -> None:
    method = ER(buffer_size=16, replay_batch_size=5)
    c0, c1 = _ctx(0), _ctx(1)
    method.adapt_batch(c0.x, c0.y, c0)
    bx, by = method.adapt_batch(c1.x, c1.y, c1)
    assert torch.equal(bx[:16], c1.x) and torch.equal(by[:16], c1.y)
    for xi, yi in zip(bx[16:], by[16:], strict=True):
        row = (c0.x == xi).all(dim=1).nonzero()
        assert row.numel() == 1 and int(c0.y[row[0, 0]]) == int(yi)
    assert method._replay_tids is not None and method._replay_tids.tolist() == [0] * 5
    fresh = ER(buffer_size=16)
    fresh.load_state_dict({})  # a first round: no buffer in the state
    assert fresh.buffer.is_empty


def test_replay_and_reservoir_draws_come_from_the_rounds_generator() -> None:
    # Prepare: a full buffer (overflow draws) and a replay batch of one; the global RNG differs between runs
    def run(global_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        method = ER(buffer_size=8, replay_batch_size=1)
        c0, c1 = _ctx(0), _ctx(1)
        method.adapt_batch(c0.x, c0.y, c0)
        torch.manual_seed(global_seed)
        bx, _ = method.adapt_batch(c1.x, c1.y, c1)
        assert method.buffer.y is not None
        return bx, method.buffer.y.clone()

    # Execute
    (bx_a, mem_a), (bx_b, mem_b) = run(0), run(1)
    # Assert: one replayed row, and the same draws whatever the global RNG
    assert bx_a.shape[0] == 16 + 1
    assert torch.equal(bx_a, bx_b) and torch.equal(mem_a, mem_b)


def test_multi_head_without_replay_keeps_the_trainers_loss() -> None:
    # Prepare: a filled memory but replay_batch_size 0 on a two-head model
    _, method, c1, logits, base = _task1_batch_after_task0(replay_batch_size=0)
    assert c1.batch_x is not None and c1.batch_y is not None
    # Execute
    got = method.loss(logits, c1.batch_y, base, c1)
    # Assert: no replayed rows, so nothing to re-route through older heads
    assert c1.batch_x.shape[0] == 4 and got is base
