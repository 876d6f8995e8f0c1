"""Toy streams (two and three class-incremental tasks) and training drivers for method tests:
one client (``run_two_tasks``) or several clients averaged into a global model (``run_federated``)."""

from __future__ import annotations

import copy
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


NUM_CLASSES3 = 6


def toy_task3(task_id: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three class-incremental tasks of two classes each ({0, 1}, {2, 3}, {4, 5}), blobs as in ``toy_task``."""
    g = torch.Generator().manual_seed(4321)
    centres = torch.randn(NUM_CLASSES3, DIM, generator=g) * 0.8
    gs = torch.Generator().manual_seed(seed * 100 + task_id)
    classes = torch.tensor([2 * task_id, 2 * task_id + 1])
    y = classes[torch.randint(0, 2, (n,), generator=gs)]
    return centres[y] + torch.randn(n, DIM, generator=gs), y


@dataclass
class FedResult:
    """What a federated toy run leaves: the global model's accuracy matrix and every client's method state.

    ``acc[i][j]`` is the global model's accuracy on task ``j`` after the last round of task ``i``.
    """

    acc: list[list[float]]
    states: list[dict]
    model: nn.Module
    snapshots: list[dict[str, torch.Tensor]]  # the global weights after each task

    @property
    def forgetting(self) -> float:
        last = len(self.acc) - 1
        return sum(self.acc[j][j] - self.acc[last][j] for j in range(last)) / max(last, 1)

    @property
    def acc_last_task(self) -> float:
        return self.acc[-1][len(self.acc) - 1]


def _fedavg(states: list[dict[str, torch.Tensor]], sizes: list[int]) -> dict[str, torch.Tensor]:
    total = float(sum(sizes))
    out = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            out[key] = first.clone()
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for s, n in zip(states, sizes, strict=True):
            acc += s[key].double() * (n / total)
        out[key] = acc.to(first.dtype)
    return out


def _sum_outboxes(boxes: list[dict[str, dict[str, torch.Tensor]]], rnd: int) -> dict:
    """The server's ``sum-<name>`` records of a round (FCLFedAvg's extra sums), as the client app receives them."""
    from fedcl import sums

    names = {name for box in boxes for name in box}
    if not names:
        return {}
    summed = {}
    for name in names:
        parts = [box[name] for box in boxes if name in box]
        summed[sums.PREFIX + name] = {k: sum(p[k].double() for p in parts).numpy() for k in parts[0]}
    return sums.payload_records(summed, rnd, len(boxes))


def run_federated(
    make_method: Callable[[], CLMethod],
    *,
    num_clients: int = 2,
    num_tasks: int = 2,
    rounds_per_task: int = 2,
    epochs: int = 2,
    lr: float = 0.05,
    n: int = 200,
    seed: int = 0,
    task_fn: Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]] = toy_task,
    num_classes: int = NUM_CLASSES,
    model: nn.Module | None = None,
    multi_head: bool = False,
) -> FedResult:
    """FedAvg over ``num_clients`` clients that each run the method locally, as the client app does.

    Every round each client starts from the global weights, restores its own method state
    (a fresh method object, as between Flower messages), trains on its own samples of the
    current task and replies; the server averages the weights by sample count and sums the
    methods' ``outbox`` arrays, which every client receives next round as ``payload``
    (FedCurv). The accuracy matrix is measured on the global model.
    """
    torch.manual_seed(seed)
    global_model = model if model is not None else MLP((DIM,), num_classes, hidden=[32])
    states: list[dict] = [{} for _ in range(num_clients)]
    seen: list[int] = []
    payload: dict = {}
    test = [task_fn(t, 400, seed + 999) for t in range(num_tasks)]
    acc: list[list[float]] = []
    snapshots: list[dict[str, torch.Tensor]] = []
    rnd = 0
    for task in range(num_tasks):
        seen.append(task)
        for r in range(rounds_per_task):
            rnd += 1
            replies, boxes = [], []
            for c in range(num_clients):
                local = copy.deepcopy(global_model)
                x, y = task_fn(task, n, seed * 10 + c + 1)
                ctx = TaskContext(
                    model=local, task_id=task, client_id=c, server_round=rnd, task_round=r,
                    last_round_of_task=r == rounds_per_task - 1, x=x, y=y, device=torch.device("cpu"),
                    num_classes=num_classes, task_classes=[2 * task, 2 * task + 1], seen_tasks=list(seen),
                    global_params={k: v.detach().clone() for k, v in local.named_parameters()},
                    generator=torch.Generator().manual_seed(seed * 10_000 + rnd * 100 + c),
                    task_data=lambda t, c=c: task_fn(t, n, seed * 10 + c + 1), multi_head=multi_head,
                    payload=dict(payload),
                )  # fmt: skip
                method = make_method()
                method.load_state_dict(states[c])
                if r == 0:
                    method.before_task(ctx)
                train_local(method, ctx, sgd(lr, 32, epochs))
                if ctx.last_round_of_task:
                    method.after_task(ctx)
                states[c] = method.state_dict()
                replies.append({k: v.detach().clone() for k, v in local.state_dict().items()})
                boxes.append(ctx.outbox)
            global_model.load_state_dict(_fedavg(replies, [n] * num_clients))
            payload = _sum_outboxes(boxes, rnd)
        acc.append([
            evaluate(global_model, *test[j], task_id=j, multi_head=multi_head, task_classes=[2 * j, 2 * j + 1])[1]
            for j in range(num_tasks)
        ])  # fmt: skip
        snapshots.append({k: v.detach().clone() for k, v in global_model.state_dict().items()})
    return FedResult(acc, states, global_model, snapshots)


def make_ctx(model: nn.Module, task_id: int, x: torch.Tensor, y: torch.Tensor, **kw: object) -> TaskContext:
    """A one-client ``TaskContext`` for hook-level tests (CPU, seeded generator, task ``t`` = classes 2t, 2t+1)."""
    fields: dict = dict(
        model=model, task_id=task_id, client_id=0, server_round=1, task_round=0, last_round_of_task=False,
        x=x, y=y, device=torch.device("cpu"), num_classes=NUM_CLASSES, task_classes=[2 * task_id, 2 * task_id + 1],
        seen_tasks=list(range(task_id + 1)), global_params={}, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    fields.update(kw)
    return TaskContext(**fields)
