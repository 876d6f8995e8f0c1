"""Weight Aligning: rescale the new classes' classifier weights to the old classes' norm."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from fedcl.methods.base import TaskContext
from fedcl.methods.er import ER


class WA(ER):
    """Weight Aligning on top of experience replay (single-head class-incremental).

    Reference: Zhao et al., "Maintaining Discrimination and Fairness in Class
    Incremental Learning", CVPR 2020.

    Training a single head on mostly new-class data leaves the new classes' output
    weight vectors with larger norms, so the model predicts new classes too often.
    After each task, WA multiplies the new classes' weight vectors by
    ``gamma = mean_{old} ||w_c|| / mean_{new} ||w_c||`` (classes seen in earlier tasks
    of this client vs. the current task's other classes). Biases are left as they are,
    as in the paper (whose classifier has no bias) and PyCIL's reference code.

    WA is defined on top of a rehearsal learner: here experience replay (``er``, which
    this class extends: a reservoir buffer appended to every batch). As in the paper,
    the classifier weights are clipped to be non-negative after every optimiser step
    (``clip_positive``), so that a class's preference lives in its weight norm, which
    is what the alignment corrects; without the clipping the norms barely separate on
    small problems and aligning them does little.

    Knowledge distillation (the paper's Eq. 3-4; PyCIL's ``models/wa.py``): from the
    second task on, with ``C_old`` classes learnt before and ``C`` seen in all, the
    loss of every mini-batch (current and replayed samples alike) is

        (1 - lam) CE(z, y) + lam KD,   KD = -mean_x sum_{k old} softmax(z_old / T)_k log softmax(z[old] / T)_k,

    ``lam = C_old / C``, ``T = 2``, ``z_old`` the logits of the model the client
    received at the start of the task (the teacher, frozen) and both softmaxes taken
    over the old classes only. The teacher's weights are the client's state until the
    task ends. On multi-head (task-incremental) models, where the heads do not
    compete, alignment, clipping and distillation are skipped (WA declares
    class-incremental streams only).

    Parameters
    ----------
    buffer_size : int, default 200
        Replay samples kept per client (0 disables replay).
    replay_batch_size : int, default 32
        Buffer samples appended to each mini-batch.
    align : bool, default True
        Apply the alignment (``False`` is the ablation: replay + clipping only).
    clip_positive : bool, default True
        Clamp the classifier weights at zero after every step.
    kd_lambda : float | None, default None
        Weight ``lam`` of the distillation term; ``None`` is the paper's
        ``C_old / C``, a number fixes it (``0`` drops distillation: replay + alignment).
    temperature : float, default 2.0
        Distillation temperature ``T`` (the paper's and PyCIL's 2).
    """

    name = "wa"
    # the alignment corrects the bias between old and new classes of one shared head
    scenarios = frozenset({"class_incremental"})
    blurry = False

    def __init__(
        self,
        buffer_size: int = 200,
        replay_batch_size: int = 32,
        align: bool = True,
        clip_positive: bool = True,
        kd_lambda: float | None = None,
        temperature: float = 2.0,
    ) -> None:
        super().__init__(buffer_size, replay_batch_size)
        if kd_lambda is not None and not 0.0 <= kd_lambda <= 1.0:
            raise ValueError(f"wa: kd_lambda must be null or lie in [0, 1], got {kd_lambda}")
        if temperature <= 0:
            raise ValueError(f"wa: temperature must be > 0, got {temperature}")
        self.align = bool(align)
        self.clip_positive = bool(clip_positive)
        self.kd_lambda = None if kd_lambda is None else float(kd_lambda)
        self.temperature = float(temperature)
        self.old_classes: list[int] = []
        self.teacher: dict[str, torch.Tensor] = {}  # the model's state_dict at the start of the current task
        self.last_gamma = 1.0
        self._teacher_dev: dict[str, torch.Tensor] = {}  # the teacher on the training device during a round

    def before_task(self, ctx: TaskContext) -> None:
        # full state_dict: batch-norm statistics are part of what the old model computes
        keep = self.old_classes and not ctx.multi_head
        self.teacher = {k: v.detach().cpu().clone() for k, v in ctx.model.state_dict().items()} if keep else {}
        self._teacher_dev = {}

    def kd_weight(self, ctx: TaskContext) -> float:
        """``lam``: the fixed ``kd_lambda`` or old classes / all seen classes."""
        if self.kd_lambda is not None:
            return self.kd_lambda
        seen = set(self.old_classes) | set(ctx.task_classes)
        return len(self.old_classes) / max(len(seen), 1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        base = super().loss(logits, y, base_loss, ctx)
        lam = self.kd_weight(ctx)
        if not self.teacher or ctx.multi_head or lam == 0.0:
            return base
        assert ctx.batch_x is not None
        if not self._teacher_dev:
            self._teacher_dev = {k: v.to(ctx.device) for k, v in self.teacher.items()}
        old = torch.as_tensor(self.old_classes, device=logits.device)
        was_training = ctx.model.training
        ctx.model.eval()  # the frozen teacher: no dropout, running norm statistics
        with torch.no_grad():
            z_old = functional_call(ctx.model, self._teacher_dev, (ctx.batch_x,))[:, old]
        ctx.model.train(was_training)
        t = self.temperature
        kd = -(F.softmax(z_old / t, dim=1) * F.log_softmax(logits[:, old] / t, dim=1)).sum(1).mean()
        return (1.0 - lam) * base + lam * kd

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        self._clip(ctx)  # after the previous optimiser step, before this forward
        return super().adapt_batch(x, y, ctx)

    @torch.no_grad()
    def _clip(self, ctx: TaskContext) -> None:
        if self.clip_positive and not ctx.multi_head:
            _head(ctx.model).weight.clamp_(min=0.0)

    def after_round(self, ctx: TaskContext) -> None:
        self._clip(ctx)  # the round's last optimiser step

    @torch.no_grad()
    def after_task(self, ctx: TaskContext) -> None:
        new = sorted(set(ctx.task_classes) - set(self.old_classes))
        if self.align and not ctx.multi_head and self.old_classes and new:
            weight = _head(ctx.model).weight
            norms = weight.norm(dim=1)
            old_mean = norms[torch.as_tensor(self.old_classes, device=weight.device)].mean()
            new_idx = torch.as_tensor(new, device=weight.device)
            gamma = old_mean / norms[new_idx].mean().clamp_min(1e-12)
            weight[new_idx] *= gamma
            self.last_gamma = float(gamma)
            ctx.metrics["wa-gamma"] = self.last_gamma
        self.old_classes = sorted(set(self.old_classes) | set(ctx.task_classes))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "old_classes": list(self.old_classes),
            "teacher": {k: v.clone() for k, v in self.teacher.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.old_classes = [int(c) for c in state.get("old_classes", [])]
        self.teacher = {k: v.detach().cpu().clone() for k, v in state.get("teacher", {}).items()}
        self._teacher_dev = {}


def _head(model: nn.Module) -> nn.Linear:
    """The single classifier layer (``model.head.heads[0]``)."""
    return cast(nn.Linear, model.get_submodule("head.heads.0"))
