"""Several local methods in one client, their hooks chained in a defined order (Avalanche's plugin lists)."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import CLMethod, TaskContext


class Composite(CLMethod):
    """Run the hooks of several methods in list order: ``method=[er,ewc]``.

    Every hook is called on each part in order; ``adapt_batch`` and ``loss`` are chained
    (the second part sees the first part's batch and loss), so ``[er, ewc]`` replays
    samples into the batch and adds EWC's penalty to the loss of the mixed batch. Each
    part keeps its own state, side by side in :meth:`state_dict` under its name.

    Parameters
    ----------
    parts : dict[str, CLMethod]
        Method name -> method, in hook order.
    """

    name = "composite"

    def __init__(self, parts: dict[str, CLMethod]) -> None:
        if len(parts) < 2:
            raise ValueError("a composite method needs at least two methods")
        self.parts = dict(parts)

    def before_task(self, ctx: TaskContext) -> None:
        for m in self.parts.values():
            m.before_task(ctx)

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        for m in self.parts.values():
            x, y = m.adapt_batch(x, y, ctx)
        return x, y

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        for m in self.parts.values():
            base_loss = m.loss(logits, y, base_loss, ctx)
        return base_loss

    def after_backward(self, ctx: TaskContext) -> None:
        for m in self.parts.values():
            m.after_backward(ctx)

    def after_step(self, ctx: TaskContext) -> None:
        for m in self.parts.values():
            m.after_step(ctx)

    def train_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The data of the first part that supplies the round's data (``joint``); ``None`` if none does."""
        for m in self.parts.values():
            data = m.train_data(ctx)
            if data is not None:
                return data
        return None

    def after_round(self, ctx: TaskContext) -> None:
        for m in self.parts.values():
            m.after_round(ctx)

    def after_task(self, ctx: TaskContext) -> None:
        for m in self.parts.values():
            m.after_task(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {name: m.state_dict() for name, m in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, m in self.parts.items():
            m.load_state_dict(state.get(name, {}))

    def forget_classes(self, classes: list[int]) -> int:
        return sum(m.forget_classes(classes) for m in self.parts.values())

    def forget_samples(self, x: torch.Tensor) -> int:
        return sum(m.forget_samples(x) for m in self.parts.values())
