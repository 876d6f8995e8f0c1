"""The local continual-learning method protocol.

The trainer (``fedcl.trainer``) owns the loop and the optimiser; a method only
implements the hooks it needs. Every hook is a no-op by default. The order per
client round is::

    [before_task]            when the client starts a task it has not trained on
    train_data               the samples the round's epochs run over (default: the current task's)
    for each local step:
        adapt_batch -> forward -> loss -> backward -> after_backward -> optimiser step -> after_step
    after_round
    [after_task]             at the client's last round of the task

Everything that must survive between rounds goes through ``state_dict()``:
the client process is not kept between messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from fedcl.methods._buffer import ReservoirBuffer, rows_in


@dataclass
class TaskContext:
    """What a hook may read about the current client round.

    Parameters
    ----------
    model : nn.Module
        The client's model (already holding the global weights at round start).
    task_id : int
        The task the client trains this round.
    client_id : int
        Logical client id (``0 .. num_clients-1``).
    server_round : int
        The 1-based server round.
    task_round : int
        0-based round index inside the current task.
    last_round_of_task : bool
        True in the client's last round of ``task_id`` (``after_task`` follows).
    x, y : torch.Tensor
        The client's training data for the current task (on ``device``).
    device : torch.device
        Where the model and data live.
    num_classes : int
        Output size of the model.
    task_classes : list[int]
        Classes of the current task (all classes for domain-incremental streams).
    seen_tasks : list[int]
        Tasks this client has trained on, current one included, in order.
    global_params : dict[str, torch.Tensor]
        A detached copy of the global weights received this round.
    generator : torch.Generator
        The round's seeded generator (seed from run seed, client and round).
    optimizer : torch.optim.Optimizer | None
        The optimiser of this round (set by the trainer before the first step).
    batch_x, batch_y : torch.Tensor | None
        The current mini-batch, after ``adapt_batch``.
    fresh_rows : int | None
        How many leading rows of ``batch_x`` are the round's own samples; the rows after
        them were appended by a method's ``adapt_batch`` (replay). ``None`` outside a step.
    payload : dict[str, Any]
        Extra server payloads (e.g. aggregated Fisher) keyed by record name.
    task_data : Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None
        The client's training data of any task it has seen, re-derived from the
        stream (no copy kept in the method state); used by the joint upper bound.
    classes_of : Callable[[int], list[int]] | None
        The classes of any task of the stream (``stream.tasks[t].classes``): the
        mask of task ``t``'s head when a method trains several heads in one round
        (``train_data`` with task ids). ``None``: the labels present in the data.
    outbox : dict[str, dict[str, torch.Tensor]]
        Arrays to send to the server with this round's reply, by name; the server
        sums each name over the round's clients and sends the sum back to every
        client next round as ``payload["sum-<name>"]`` (FedCurv's Fisher sums).
    """

    model: nn.Module
    task_id: int
    client_id: int
    server_round: int
    task_round: int
    last_round_of_task: bool
    x: torch.Tensor
    y: torch.Tensor
    device: torch.device
    num_classes: int
    task_classes: list[int]
    seen_tasks: list[int]
    global_params: dict[str, torch.Tensor]
    generator: torch.Generator
    optimizer: torch.optim.Optimizer | None = None
    batch_x: torch.Tensor | None = None
    batch_y: torch.Tensor | None = None
    fresh_rows: int | None = None
    multi_head: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    task_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None
    classes_of: Callable[[int], list[int]] | None = None
    outbox: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


class CLMethod:
    """Base class of local continual-learning methods: every hook is a no-op.

    Every method declares the stream scenarios it is meant for (Mammoth's
    ``COMPATIBILITY``): ``scenarios`` (a subset of ``fedcl.data.streams.SCENARIOS``) and ``blurry``
    (whether it keeps its meaning on Si-Blurry class-incremental streams, where a
    task's data holds samples of other tasks' classes). The base class declares
    nothing, so a method that forgets to declare is refused everywhere
    (``fedcl.methods.check_compatibility``).
    """

    name: str = "base"
    scenarios: ClassVar[frozenset[str]] = frozenset()
    blurry: ClassVar[bool] = False

    def before_task(self, ctx: TaskContext) -> None:
        """Called once when the client begins a task it has not trained on."""

    def train_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The ``(x, y, task_ids)`` the round's epochs run over, or ``None`` for ``ctx.x, ctx.y``.

        Called once per round, before the first step. With a multi-head model each
        sample goes through its own task's head (masked to that task's classes).
        """
        return None

    def adapt_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the batch to train on (e.g. mixed with replay samples)."""
        return x, y

    def loss(
        self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext
    ) -> torch.Tensor:
        """Return the loss to minimise (e.g. ``base_loss`` plus a regulariser)."""
        return base_loss

    def after_backward(self, ctx: TaskContext) -> None:
        """Called after ``backward()``, before the optimiser step (gradient surgery)."""

    def after_step(self, ctx: TaskContext) -> None:
        """Called after the optimiser step (weights updated, ``.grad`` still that step's gradient)."""

    def after_round(self, ctx: TaskContext) -> None:
        """Called after the local epochs of every round."""

    def after_task(self, ctx: TaskContext) -> None:
        """Called after training in the client's last round of a task."""

    def state_dict(self) -> dict[str, Any]:
        """Everything that must survive to the next round (tensors, numbers, lists)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def forget_classes(self, classes: list[int]) -> int:
        """Drop stored samples of classes under a served deletion request; return how many.

        Unlearning promises that forgotten data never trains the model again, and a
        replay buffer filled before the request still holds it. The default purges
        every reservoir buffer of this method and of methods it is built from (ER +
        EWC); a method that stores data some other way overrides this.
        """
        removed = 0
        for value in vars(self).values():
            if isinstance(value, ReservoirBuffer):
                removed += value.drop_classes(classes)
            elif isinstance(value, CLMethod):
                removed += value.forget_classes(classes)
        return removed


    def forget_samples(self, x: torch.Tensor) -> int:
        """Drop stored copies of forgotten samples (rows equal to a row of ``x``); return how many.

        The sample-level counterpart of :meth:`forget_classes` (a served ``random`` /
        ``worst`` deletion request); the default purges every reservoir buffer.
        """
        removed = 0
        for value in vars(self).values():
            if isinstance(value, ReservoirBuffer) and value.x is not None:
                removed += value.drop_rows(rows_in(value.x, x))
            elif isinstance(value, CLMethod):
                removed += value.forget_samples(x)
        return removed


def state_nbytes(state: Any) -> int:
    """Bytes held by the tensors / arrays inside a (nested) method state."""
    if isinstance(state, torch.Tensor):
        return state.element_size() * state.nelement()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    nbytes = getattr(state, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int) else 0
