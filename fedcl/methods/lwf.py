"""Learning without Forgetting: distil the pre-task model's old-class outputs on new data."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods.base import CLMethod, TaskContext


class LwF(CLMethod):
    """Learning without Forgetting.

    Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017.

    ``before_task`` keeps a copy of the model weights the client starts the new task
    from (the global model that learnt the earlier tasks). While training, ``loss`` adds
    ``alpha * T^2 * KL(softmax(z_old / T) || softmax(z / T))`` on the current batch, where
    ``z_old`` and ``z`` are the old and current model's logits restricted to the classes
    of earlier tasks (single head), or the outputs of each earlier task's head restricted
    to that task's classes (multi-head). No samples of old tasks are stored.

    Parameters
    ----------
    alpha : float, default 1.0
        Weight of the distillation term.
    temperature : float, default 2.0
        Softmax temperature ``T`` of the distillation.
    """

    name = "lwf"
    # the teacher's old-task heads (task-), old classes' logits (class-) or all logits (domain-incremental)
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.old_weights: dict[str, torch.Tensor] = {}  # model.state_dict() before the current task
        self.task_classes: dict[int, list[int]] = {}  # classes of every task this client trained
        self.old_tasks: list[int] = []  # tasks finished before the current one
        self._teacher: nn.Module | None = None

    def before_task(self, ctx: TaskContext) -> None:
        self.old_tasks = [t for t in ctx.seen_tasks if t != ctx.task_id and t in self.task_classes]
        self.task_classes[ctx.task_id] = list(ctx.task_classes)
        # full state_dict: batch-norm statistics are part of what the old model computes
        self.old_weights = (
            {k: v.detach().cpu().clone() for k, v in ctx.model.state_dict().items()} if self.old_tasks else {}
        )
        self._teacher = None

    def _teacher_model(self, ctx: TaskContext) -> nn.Module:
        if self._teacher is None:
            teacher = copy.deepcopy(ctx.model)
            teacher.load_state_dict(self.old_weights)
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            self._teacher = teacher
        return self._teacher

    def _kd(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        # T^2 keeps the gradient scale independent of the temperature (Hinton et al., 2015)
        kl = F.kl_div(
            F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean", log_target=True
        )
        return kl * t * t

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if not self.old_weights or not self.old_tasks or self.alpha == 0.0:
            return base_loss
        assert ctx.batch_x is not None
        x = ctx.batch_x
        teacher = self._teacher_model(ctx)
        kd = base_loss.new_zeros(())
        if ctx.multi_head:
            for t in self.old_tasks:
                cls = torch.as_tensor(self.task_classes[t], device=x.device)
                with torch.no_grad():
                    z_old = teacher(x, t)[:, cls]
                kd = kd + self._kd(ctx.model(x, t)[:, cls], z_old)
        else:
            old = sorted({c for t in self.old_tasks for c in self.task_classes[t]} - set(ctx.task_classes))
            if not old:
                # domain-incremental: every task shares the classes, distil all of them
                old = sorted({c for t in self.old_tasks for c in self.task_classes[t]})
            cls = torch.as_tensor(old, device=x.device)
            with torch.no_grad():
                z_old = teacher(x)[:, cls]
            kd = self._kd(logits[:, cls], z_old)
        return base_loss + self.alpha * kd

    def state_dict(self) -> dict[str, Any]:
        return {
            "old_weights": {k: v.clone() for k, v in self.old_weights.items()},
            "task_classes": {int(t): list(c) for t, c in self.task_classes.items()},
            "old_tasks": list(self.old_tasks),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old_weights = {k: v.detach().cpu().clone() for k, v in state.get("old_weights", {}).items()}
        self.task_classes = {int(t): [int(c) for c in cs] for t, cs in state.get("task_classes", {}).items()}
        self.old_tasks = [int(t) for t in state.get("old_tasks", [])]
        self._teacher = None
