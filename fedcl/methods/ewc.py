"""Online EWC: a diagonal-Fisher quadratic penalty that anchors weights important to past tasks."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods._utils import empirical_fisher, snapshot, trainable
from fedcl.methods.base import CLMethod, TaskContext


class EWC(CLMethod):
    """Online Elastic Weight Consolidation.

    Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017;
    online variant from Schwarz et al., "Progress & Compress: A scalable framework for
    continual learning", ICML 2018.

    At the client's last round of a task (``after_task``) the diagonal empirical Fisher
    ``F_new = mean_i (d log p(y_i | x_i) / d w)^2`` is estimated on at most
    ``fisher_samples`` of the task's samples and folded into a single running Fisher
    ``F <- gamma * F + F_new``; the anchor ``w*`` becomes the weights at the end of the
    task. While training later tasks, ``loss`` adds ``ewc_lambda / 2 * sum F (w - w*)^2``.
    In the federated setting the anchor is the client's own end-of-task model.

    Stability guard: the penalty is a quadratic with curvature ``ewc_lambda * F`` per
    weight, and an SGD step of size ``lr`` on it diverges once ``lr * ewc_lambda * F >
    2``. Fisher entries accumulate over tasks, so a lambda that is safe on task 1 can
    blow up on task 3 (``ewc_lambda`` 100 at lr 0.05 gave NaN weights on Permuted
    Fashion-MNIST). Each entry's curvature is therefore capped so that
    ``lr * ewc_lambda * F <= max_penalty_step``; at the default 1 one penalty step
    moves a weight at most back to its anchor. Weights below the cap (nearly all
    of them) are unaffected; ``max_penalty_step: null`` turns the guard off.

    Parameters
    ----------
    ewc_lambda : float, default 100.0
        Strength of the quadratic penalty.
    gamma : float, default 1.0
        Decay of the running Fisher (1 keeps every past task at full weight).
    fisher_samples : int, default 256
        Upper bound on the samples used to estimate the Fisher of a task.
    max_penalty_step : float | None, default 1.0
        Cap on ``lr * ewc_lambda * F`` per weight (``lr`` of the round's optimiser).
    """

    name = "ewc"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        ewc_lambda: float = 100.0,
        gamma: float = 1.0,
        fisher_samples: int = 256,
        max_penalty_step: float | None = 1.0,
    ) -> None:
        if max_penalty_step is not None and max_penalty_step <= 0:
            raise ValueError(f"ewc: max_penalty_step must be > 0 or null, got {max_penalty_step}")
        self.max_penalty_step = None if max_penalty_step is None else float(max_penalty_step)
        self.ewc_lambda = float(ewc_lambda)
        self.gamma = float(gamma)
        self.fisher_samples = int(fisher_samples)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._device_cache: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if not self.fisher or self.ewc_lambda == 0.0:
            return base_loss
        if self._device_cache is None:
            # moved (and capped) once per round instead of once per step
            cap = self.curvature_cap(ctx)
            self._device_cache = (
                {k: (v if cap is None else v.clamp(max=cap)).to(ctx.device) for k, v in self.fisher.items()},
                {k: v.to(ctx.device) for k, v in self.anchor.items()},
            )
        fisher, anchor = self._device_cache
        penalty = base_loss.new_zeros(())
        for name, p in trainable(ctx.model):
            if name in fisher:
                penalty = penalty + (fisher[name] * (p - anchor[name]) ** 2).sum()
        return base_loss + 0.5 * self.ewc_lambda * penalty

    def curvature_cap(self, ctx: TaskContext) -> float | None:
        """Largest Fisher entry that keeps ``lr * ewc_lambda * F <= max_penalty_step`` (None: no cap)."""
        opt = getattr(ctx, "optimizer", None)
        if self.max_penalty_step is None or opt is None:
            return None
        lr = max(float(g["lr"]) for g in opt.param_groups)
        return self.max_penalty_step / (lr * self.ewc_lambda) if lr > 0 else None

    def after_task(self, ctx: TaskContext) -> None:
        new = self.estimate_fisher(ctx)
        for name, f in new.items():
            old = self.fisher.get(name)
            self.fisher[name] = f if old is None else self.gamma * old + f
        self.anchor = snapshot(ctx.model)
        self._device_cache = None

    def estimate_fisher(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        """Diagonal empirical Fisher of the current model on a random subset of the task data."""
        return empirical_fisher(ctx, self.fisher_samples)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fisher": {k: v.clone() for k, v in self.fisher.items()},
            "anchor": {k: v.clone() for k, v in self.anchor.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher = {k: v.detach().cpu().clone() for k, v in state.get("fisher", {}).items()}
        self.anchor = {k: v.detach().cpu().clone() for k, v in state.get("anchor", {}).items()}
        self._device_cache = None
