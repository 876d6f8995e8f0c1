"""Local training: device choice, FedProx's proximal term, the after_step hook, method-supplied data."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedcl.errors import ConfigError
from fedcl.methods import build_method
from fedcl.methods.base import CLMethod, TaskContext
from fedcl.models import MLP
from fedcl.trainer import TrainConfig, pick_device, train_local
from tests.fedcl.methods.toy import NUM_CLASSES, make_model, sgd, toy_task


def test_pick_device() -> None:
    # auto follows what is visible; an explicit device must exist; anything else is refused
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            pick_device("cuda:0")
    with pytest.raises(ConfigError, match="'auto', 'cpu'"):
        pick_device("tpu")


def _drift(mu: float) -> float:
    """Distance from the global weights after one local round with proximal coefficient ``mu``."""
    model = make_model(0)
    x, y = toy_task(0, 200, 0)
    ctx = TaskContext(
        model=model, task_id=0, client_id=0, server_round=1, task_round=0, last_round_of_task=False, x=x, y=y,
        device=torch.device("cpu"), num_classes=NUM_CLASSES, task_classes=[0, 1], seen_tasks=[0],
        global_params={k: v.detach().clone() for k, v in model.named_parameters()},
        generator=torch.Generator().manual_seed(0),
    )
    start = dict(ctx.global_params)
    train_local(build_method({"naive": {}}), ctx, TrainConfig(lr=0.1, local_epochs=5, batch_size=20, momentum=0.0,
                                                                 weight_decay=0.0, proximal_mu=mu))
    with torch.no_grad():
        return float(sum(((p - start[k]) ** 2).sum() for k, p in model.named_parameters()).sqrt())


def test_proximal_term_keeps_the_client_near_the_global_model() -> None:
    # Execute: the same data, seed and steps with mu = 0, 1 and 10
    d0, d1, d10 = _drift(0.0), _drift(1.0), _drift(10.0)
    # Assert: FedProx pulls the local weights towards the global ones, more as mu grows
    assert d10 < d1 < d0
    assert d10 < 0.5 * d0


class _StepProbe(CLMethod):
    """Records, after every optimiser step, whether the weights moved and the gradient is still there."""

    name = "step_probe"

    def __init__(self) -> None:
        self.log: list[str] = []
        self._before: torch.Tensor | None = None

    def after_backward(self, ctx: TaskContext) -> None:
        self.log.append("after_backward")
        self._before = next(ctx.model.parameters()).detach().clone()

    def after_step(self, ctx: TaskContext) -> None:
        p = next(ctx.model.parameters())
        assert self._before is not None and p.grad is not None
        moved = not torch.equal(p.detach(), self._before)
        self.log.append("after_step" if moved else "after_step-before-the-step")

    def after_round(self, ctx: TaskContext) -> None:
        self.log.append("after_round")


def test_after_step_follows_the_optimiser_step_with_the_step_gradient() -> None:
    x, y = toy_task(0, 64, 0)
    ctx = TaskContext(
        model=make_model(0), task_id=0, client_id=0, server_round=1, task_round=0, last_round_of_task=False,
        x=x, y=y, device=torch.device("cpu"), num_classes=NUM_CLASSES, task_classes=[0, 1], seen_tasks=[0],
        global_params={}, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    probe = _StepProbe()
    train_local(probe, ctx, sgd(lr=0.1, batch_size=32))
    assert probe.log == ["after_backward", "after_step"] * 2 + ["after_round"]


class _TwoTasks(CLMethod):
    """Supplies task 0's and task 1's samples with their task ids (what joint does)."""

    name = "two_tasks"

    def __init__(self, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        self.data = data

    def train_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        return self.data


@pytest.mark.parametrize("wired", [False, True])
def test_supplied_samples_go_through_their_own_head_and_mask(wired: bool) -> None:
    # Prepare: a two-head model, 3 samples of task 0 (classes {0, 1}; only label 0 present) and 2 of
    # task 1 (classes {2, 3}); lr 0, so the round's loss is the loss at these weights. Task 0's mask is
    # {0, 1} when the client says so (classes_of), else the labels present, {0}
    torch.manual_seed(0)
    model = MLP((5,), 4, hidden=[3], num_heads=2)
    x = torch.randn(5, 5)
    y = torch.tensor([0, 0, 0, 3, 2])
    tids = torch.tensor([0, 0, 0, 1, 1])
    ctx = TaskContext(
        model=model, task_id=1, client_id=0, server_round=1, task_round=0, last_round_of_task=False,
        x=x[3:], y=y[3:], device=torch.device("cpu"), num_classes=4, task_classes=[2, 3], seen_tasks=[0, 1],
        global_params={}, generator=torch.Generator().manual_seed(0), multi_head=True,
        classes_of=(lambda t: [2 * t, 2 * t + 1]) if wired else None,
    )  # fmt: skip
    # Execute
    result = train_local(_TwoTasks((x, y, tids)), ctx, sgd(lr=0.0, batch_size=5))
    # Assert: task 0's rows through head 0 restricted to {0, 1}, task 1's through head 1 restricted to {2, 3}
    with torch.no_grad():
        h0, h1 = model(x[:3], 0)[:, [0, 1] if wired else [0]], model(x[3:], 1)[:, [2, 3]]
        want = torch.cat([F.cross_entropy(h0, y[:3], reduction="none"),
                          F.cross_entropy(h1, y[3:] - 2, reduction="none")]).mean()  # fmt: skip
    assert result.loss == pytest.approx(float(want), rel=1e-6)
    assert result.num_examples == 5
