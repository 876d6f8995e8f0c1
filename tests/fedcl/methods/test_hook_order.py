"""The trainer and the client-style driver call the hooks in the documented order."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import CLMethod, TaskContext
from fedcl.trainer import TrainConfig, train_local
from tests.fedcl.methods.toy import make_model, run_two_tasks, toy_task

LOG: list[str] = []


class Recorder(CLMethod):
    """Appends every hook call to ``LOG`` (a module list: the method is rebuilt each round)."""

    name = "recorder"

    def before_task(self, ctx: TaskContext) -> None:
        LOG.append("before_task")

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        LOG.append("adapt_batch")
        return x, y

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        LOG.append("loss")
        assert base_loss.grad_fn is not None  # forward done, backward not yet
        return base_loss

    def after_backward(self, ctx: TaskContext) -> None:
        LOG.append("after_backward")
        assert all(p.grad is not None for p in ctx.model.parameters())  # before the step

    def after_round(self, ctx: TaskContext) -> None:
        LOG.append("after_round")

    def after_task(self, ctx: TaskContext) -> None:
        LOG.append("after_task")

    def state_dict(self) -> dict[str, Any]:
        return {}


STEP = ["adapt_batch", "loss", "after_backward"]


def _round(steps: int, first: bool, last: bool) -> list[str]:
    return (["before_task"] if first else []) + STEP * steps + ["after_round"] + (["after_task"] if last else [])


def test_train_local_calls_step_hooks_then_after_round() -> None:
    LOG.clear()
    x, y = toy_task(0, 70, seed=0)
    ctx = TaskContext(
        model=make_model(0), task_id=0, client_id=0, server_round=1, task_round=0, last_round_of_task=False,
        x=x, y=y, device=torch.device("cpu"), num_classes=4, task_classes=[0, 1], seen_tasks=[0],
        global_params={}, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    cfg = TrainConfig(lr=0.01, local_epochs=2, batch_size=32, momentum=0.0, weight_decay=0.0, proximal_mu=0.0)
    result = train_local(Recorder(), ctx, cfg)
    assert result.steps == 6  # ceil(70 / 32) = 3 steps per epoch
    assert LOG == STEP * 6 + ["after_round"]


def test_run_two_tasks_calls_task_hooks_at_boundaries() -> None:
    LOG.clear()
    run_two_tasks(Recorder, seed=0, rounds_per_task=2, epochs=1, n=64)
    steps = 2  # 64 samples, batch 32
    want: list[str] = []
    for _task in range(2):
        want += _round(steps, first=True, last=False) + _round(steps, first=False, last=True)
    assert LOG == want
