"""Joint (cumulative) upper bound: rounds run over the union of seen tasks, every head trained, no state."""

from __future__ import annotations

import math

import pytest
import torch

from fedcl.methods import build_method
from fedcl.methods.base import TaskContext
from fedcl.models import MLP
from fedcl.trainer import train_local
from tests.fedcl.methods.toy import run_two_tasks, sgd, toy_task
from tests.fedcl.methods.toy_multihead import mh_task, run_two_tasks_multi_head


def _task1_ctx(model: torch.nn.Module, n: int, multi_head: bool) -> TaskContext:
    """A round of task 1 after task 0, with task 0's data re-derivable (``task_data``)."""
    fn = mh_task if multi_head else toy_task
    x, y = fn(1, n, 0)
    return TaskContext(
        model=model, task_id=1, client_id=0, server_round=4, task_round=0, last_round_of_task=False, x=x, y=y,
        device=torch.device("cpu"), num_classes=4, task_classes=[2, 3], seen_tasks=[0, 1], global_params={},
        generator=torch.Generator().manual_seed(0), task_data=lambda t: fn(t, n + 30, 0), multi_head=multi_head,
    )  # fmt: skip


def test_a_round_runs_over_the_union_of_seen_tasks() -> None:
    # Prepare: task 1 holds 100 samples, task 0 (re-derived) 130
    ctx = _task1_ctx(MLP((16,), 4, hidden=[8]), 100, multi_head=False)
    # Execute: two epochs, batch 32
    result = train_local(build_method({"joint": {}}), ctx, sgd(0.01, 32, 2))
    # Assert: every epoch covers all 230 samples once (8 batches), and FedAvg weighs the union
    assert result.num_examples == 230
    assert result.steps == 2 * math.ceil(230 / 32)


@pytest.mark.parametrize("method", ["naive", "joint"])
def test_task_incremental_joint_trains_the_old_head_on_its_own_task(method: str) -> None:
    # Prepare: a two-head model in task 1
    torch.manual_seed(0)
    model = MLP((8,), 4, hidden=[4], num_heads=2)
    ctx = _task1_ctx(model, 64, multi_head=True)
    head0 = {k: v.detach().clone() for k, v in model.named_parameters() if k.startswith("head.heads.0")}
    # Execute: one round
    train_local(build_method({method: {}}), ctx, sgd(0.1, 32))
    # Assert: only joint moves task 0's head (its samples go through it)
    moved = any(not torch.equal(v, dict(model.named_parameters())[k]) for k, v in head0.items())
    assert moved == (method == "joint")


@pytest.mark.parametrize("seed", [0, 1])
def test_task_incremental_joint_beats_naive(seed: int) -> None:
    naive = run_two_tasks_multi_head(lambda: build_method({"naive": {}}), seed=seed)
    joint = run_two_tasks_multi_head(lambda: build_method({"joint": {}}), seed=seed)
    # measured: task 0 after task 1 0.95 / 0.94 against naive's 0.73 / 0.71; mean of both tasks
    # 0.90 / 0.93 against 0.84 / 0.83 (seeds 0 / 1; a two-unit body cannot hold both tasks perfectly)
    assert joint.acc0_after_task1 > naive.acc0_after_task1 + 0.15
    assert joint.acc0_after_task1 + joint.acc1_after_task1 > naive.acc0_after_task1 + naive.acc1_after_task1 + 0.08


def test_class_incremental_joint_forgets_far_less_than_naive() -> None:
    for seed in (0, 1):
        naive = run_two_tasks(lambda: build_method({"naive": {}}), seed=seed)
        joint = run_two_tasks(lambda: build_method({"joint": {}}), seed=seed)
        assert joint.forgetting < naive.forgetting - 0.3
        assert joint.acc1_after_task1 > 0.9


def test_joint_state_is_empty_and_needs_task_data() -> None:
    method = build_method({"joint": {}})
    assert method.state_dict() == {}
    ctx = _task1_ctx(MLP((16,), 4, hidden=[8]), 10, multi_head=False)
    ctx.task_data = None
    with pytest.raises(ValueError) as info:
        method.train_data(ctx)
    assert str(info.value) == "joint: the client gave no ctx.task_data, so earlier tasks' data cannot be re-derived"


def test_the_union_labels_each_earlier_task_with_its_own_size_and_id() -> None:
    # Prepare: task 2 after tasks 0 (5 samples) and 1 (3 samples)
    ctx = _task1_ctx(MLP((16,), 4, hidden=[8]), 4, multi_head=False)
    ctx.task_id, ctx.seen_tasks = 2, [0, 1, 2]
    sizes = {0: 5, 1: 3}
    ctx.task_data = lambda t: toy_task(t % 2, sizes[t], 0)
    # Execute
    got = build_method({"joint": {}}).train_data(ctx)
    # Assert
    assert got is not None
    x, y, tids = got
    assert x.shape[0] == y.shape[0] == 4 + 5 + 3
    assert tids.tolist() == [2] * 4 + [0] * 5 + [1] * 3


def test_the_union_lives_on_the_rounds_device() -> None:
    # Prepare: the round's data on the meta device (an accelerator stand-in), earlier tasks re-derived on the CPU
    ctx = _task1_ctx(MLP((16,), 4, hidden=[8]), 4, multi_head=False)
    ctx.x, ctx.y = ctx.x.to("meta"), ctx.y.to("meta")
    # Execute
    got = build_method({"joint": {}}).train_data(ctx)
    # Assert
    assert got is not None and got[0].device.type == got[1].device.type == "meta"
