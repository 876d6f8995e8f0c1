"""A two-task toy stream and a one-client training driver for method tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fedcl.methods.base import CLMethod, TaskContext
from fedcl.models import MLP
from fedcl.trainer import TrainConfig, evaluate, train_local

NUM_CLASSES = 4
DIM = 16


def toy_task(task_id: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Task 0 holds classes {0, 1}, task 1 classes {2, 3}: Gaussian blobs that overlap
    enough that learning task 1 naively overwrites task 0 (class-incremental)."""
    g = torch.Generator().manual_seed(1234)
    centres = torch.randn(NUM_CLASSES, DIM, generator=g) * 0.8
    gs = torch.Generator().manual_seed(seed * 100 + task_id)
    classes = torch.tensor([2 * task_id, 2 * task_id + 1])
    y = classes[torch.randint(0, 2, (n,), generator=gs)]
    x = centres[y] + torch.randn(n, DIM, generator=gs)
    return x, y


@dataclass
class ToyResult:
    acc0_after_task0: float
    acc0_after_task1: float
    acc1_after_task1: float

    @property
    def forgetting(self) -> float:
        return self.acc0_after_task0 - self.acc0_after_task1


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP((DIM,), NUM_CLASSES, hidden=[32])


def run_two_tasks(
    make_method: Callable[[], CLMethod],
    seed: int = 0,
    rounds_per_task: int = 3,
    epochs: int = 2,
    lr: float = 0.05,
    n: int = 400,
    model: nn.Module | None = None,
    task_fn: Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]] = toy_task,
    multi_head: bool = False,
) -> ToyResult:
    """Train one client on task 0 then task 1, calling every hook as the client app does.

    A fresh method object is built every round and restored from the previous
    round's ``state_dict()``, exactly as the client app does between messages.
    ``task_fn(task, n, seed)`` makes a task's data; ``multi_head`` gives each task its head.
    """
    state: dict = {}
    model = model if model is not None else make_model(seed)
    device = torch.device("cpu")
    test = [task_fn(t, 400, seed + 999) for t in range(2)]

    def acc(t: int) -> float:
        return evaluate(model, *test[t], task_id=t, multi_head=multi_head, task_classes=[2 * t, 2 * t + 1])[1]

    accs: dict[str, float] = {}
    seen: list[int] = []
    rnd = 0
    for task in range(2):
        x, y = task_fn(task, n, seed)
        seen.append(task)
        for r in range(rounds_per_task):
            rnd += 1
            ctx = TaskContext(
                model=model,
                task_id=task,
                client_id=0,
                server_round=rnd,
                task_round=r,
                last_round_of_task=r == rounds_per_task - 1,
                x=x,
                y=y,
                device=device,
                num_classes=NUM_CLASSES,
                task_classes=[2 * task, 2 * task + 1],
                seen_tasks=list(seen),
                global_params={k: v.detach().clone() for k, v in model.named_parameters()},
                generator=torch.Generator().manual_seed(seed * 1000 + rnd),
                task_data=lambda t: task_fn(t, n, seed),
                multi_head=multi_head,
            )
            method = make_method()
            method.load_state_dict(state)
            if r == 0:
                method.before_task(ctx)
            train_local(method, ctx, sgd(lr, 32, epochs))
            if ctx.last_round_of_task:
                method.after_task(ctx)
            state = method.state_dict()
        if task == 0:
            accs["a00"] = acc(0)
    return ToyResult(accs["a00"], acc(0), acc(1))


def sgd(lr: float, batch_size: int, local_epochs: int = 1) -> TrainConfig:
    """Plain SGD settings: no momentum, no weight decay, no proximal term."""
    return TrainConfig(lr=lr, local_epochs=local_epochs, batch_size=batch_size, momentum=0.0, weight_decay=0.0,
                       proximal_mu=0.0)
