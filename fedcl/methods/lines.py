"""LiNeS: scale each task's weight update by a factor that grows linearly with depth."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedcl.methods.base import CLMethod, TaskContext


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped by layer, shallowest first.

    A layer is the module that owns a parameter (``body.1.weight`` and ``body.1.bias``
    are one layer). Every parameter under ``head`` is the deepest layer: multi-head
    heads sit side by side at the same depth, not one after the other.
    """
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        owner = "head" if name.startswith("head.") else name.rpartition(".")[0]
        groups.setdefault(owner, []).append(name)
    return list(groups.values())


def lines_scales(num_layers: int, alpha: float, beta: float) -> list[float]:
    """``lambda_l = alpha + beta (l - 1) / (L - 1)`` for ``l = 1..L`` (a single layer gets
    ``alpha + beta``, the deepest layer's factor)."""
    if num_layers == 1:
        return [alpha + beta]
    return [alpha + beta * i / (num_layers - 1) for i in range(num_layers)]


class LiNeS(CLMethod):
    """Layer-increasing network scaling of each task's update, applied post-training.

    Reference: Wang et al., "LiNeS: Post-training Layer Scaling Prevents Forgetting and
    Enhances Model Merging", ICLR 2025 (github.com/wang-kee/LiNeS).

    ``before_task`` keeps ``w_start`` (the weights the client starts the task from);
    ``after_task`` edits the task vector ``tau = w_end - w_start`` layer by layer,
    ``w = w_start + lambda_l tau_l`` with ``lambda_l = alpha + beta (l - 1) / (L - 1)``
    over the ``L`` layers in depth order: shallow, general features stay close to
    what earlier tasks built, deep task-specific layers keep (almost) all of the update.

    The paper edits a fine-tuned *pre-trained* model. Trained from scratch, the first
    task has nothing to protect (``w_start`` is a random initialisation), so it is left
    unscaled unless ``scale_first_task`` is set.

    Parameters
    ----------
    alpha : float, default 0.3
        Factor of the shallowest layer.
    beta : float, default 0.7
        Added linearly with depth; the deepest layer (the head) gets ``alpha + beta``.
    scale_first_task : bool, default False
        Also scale the update of the client's first task.
    """

    name = "lines"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, scale_first_task: bool = False) -> None:
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.scale_first_task = bool(scale_first_task)
        self.start: dict[str, torch.Tensor] = {}
        self.tasks_done = 0

    def before_task(self, ctx: TaskContext) -> None:
        self.start = {k: p.detach().cpu().clone() for k, p in ctx.model.named_parameters()}

    @torch.no_grad()
    def after_task(self, ctx: TaskContext) -> None:
        first = self.tasks_done == 0
        self.tasks_done += 1
        if not self.start or (first and not self.scale_first_task):
            return
        params = dict(ctx.model.named_parameters())
        groups = layer_groups(ctx.model)
        for names, lam in zip(groups, lines_scales(len(groups), self.alpha, self.beta), strict=True):
            for k in names:
                p = params[k]
                w0 = self.start[k].to(p.device, p.dtype)
                p.copy_(w0 + lam * (p - w0))
        self.start = {}

    def state_dict(self) -> dict[str, Any]:
        return {"start": {k: v.clone() for k, v in self.start.items()}, "tasks_done": self.tasks_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start = {k: v.detach().cpu().clone() for k, v in state.get("start", {}).items()}
        self.tasks_done = int(state.get("tasks_done", 0))
