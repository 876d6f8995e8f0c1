"""Exponential moving average of the client's weights (a stability baseline)."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import CLMethod, TaskContext


class EMA(CLMethod):
    """Plain EMA of the client's weights, swapped into the model at the end of each task.

    After every round ``w_ema <- beta * w_ema + (1 - beta) * w`` (the first round of
    the client's first task starts the average at ``w``); at the end of each task the
    model takes ``w_ema``. The average runs across tasks, so the weights handed on to
    the next task keep a share of every earlier task's solution.

    Reference: the fixed-coefficient EMA baseline of Qiao et al., "Large Continual
    Instruction Assistant", ICML 2025 (``ema_balanced`` makes ``beta`` adaptive).

    Parameters
    ----------
    beta : float, default 0.5
        Weight of the running average; ``0`` is naive fine-tuning, ``1`` freezes the
        average at the first round's weights. One update per *round*, so ``beta`` is
        much smaller than the per-step 0.99-0.999 of centralised EMA.
    """

    name = "ema"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, beta: float = 0.5) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"ema: beta must lie in [0, 1], got {beta}")
        self.beta = float(beta)
        self.ema: dict[str, torch.Tensor] = {}

    def after_round(self, ctx: TaskContext) -> None:
        current = float_state(ctx.model)
        if not self.ema:
            self.ema = current
            return
        for k, w in current.items():
            self.ema[k].mul_(self.beta).add_(w, alpha=1.0 - self.beta)

    def after_task(self, ctx: TaskContext) -> None:
        if self.ema:
            loadfloat_state(ctx.model, self.ema)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": {k: v.clone() for k, v in self.ema.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = {k: v.detach().cpu().clone() for k, v in state.get("ema", {}).items()}


def float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's floating-point state entries."""
    # Integer buffers (e.g. BatchNorm's num_batches_tracked) are counters, not weights.
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


@torch.no_grad()
def loadfloat_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` into the matching floating-point entries of ``model`` in place."""
    own = model.state_dict()
    for k, w in weights.items():
        own[k].copy_(w.to(own[k].device, own[k].dtype))
