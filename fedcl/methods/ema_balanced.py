"""Stability-plasticity balanced EMA: the EMA coefficient set after every step from weights and gradients."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import TaskContext
from fedcl.methods.ema import EMA


class EMABalanced(EMA):
    """EMA of the client's weights whose coefficient is chosen per parameter tensor at every optimiser step.

    Reference: Qiao et al., "Large Continual Instruction Assistant", ICML 2025. The rule
    follows the authors' code, github.com/JingyangQiao/CoIN, file
    ``CoIN/peft/tuners/lora.py``, ``LoraModel.ema_update`` (called right after
    ``optimizer.step()`` in ``llava/train/transformers/trainer.py``; ``ema_replace``
    loads the average into the model when a task's training ends).

    After every optimiser step, for every trainable parameter tensor ``p`` with average
    ``p*``, this step's gradient ``g`` and the previous step's gradient ``g'``::

        a = ||p - p*||_1,   b = ||g||_1,   c = ||g - g'||_1
        alpha = 2 (1 + b) / (a c),   alpha <- fallback (0.01) unless 0 < alpha < 1
        p* <- (1 - alpha) p* + alpha p

    ``alpha`` is the weight of the new weights (the EMA's ``1 - beta``). The average
    starts at the weights after the task's first step, and that first step (no
    ``g'`` yet) takes the fallback, as in the authors' code, where the ``try`` fails on
    the missing previous gradient; a tensor without a gradient this step (an unused
    head) also takes the fallback. The average and ``g'`` restart at every new task
    (the authors train each task in a new process) and run on across the task's
    rounds (one client's steps form one trajectory; the weights jump to the global
    model between rounds, which the next step's ``a`` sees). At the end of each task
    the model takes the average; buffers (batch-norm statistics) are not averaged.
    The instruction-grouping / LoRA expansion half of the paper is out of scope.

    The L1 norms grow with a tensor's size, so on small tensors (biases) ``a c`` stays
    small and the rule takes the fallback nearly always; on the MLP's weight matrices
    it gives ``alpha`` inside (0, 1) on a good share of the steps. An earlier reading of
    the abstract (``beta = lam / (lam + (g.u)^2)`` before the step, the average running
    across tasks) was measured against this rule and dropped
    (simulations/benchmarks/results/ema_balanced.md).

    Parameters
    ----------
    fallback : float, default 0.01
        Weight of the new weights when ``alpha`` leaves (0, 1) (the authors' 0.01).
    """

    name = "ema_balanced"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, fallback: float = 0.01) -> None:
        if not 0.0 < fallback <= 1.0:
            raise ValueError(f"ema_balanced: fallback must lie in (0, 1], got {fallback}")
        super().__init__()  # the running average and its state; the fixed beta is replaced per step
        self.fallback = float(fallback)
        self.prev_grad: dict[str, torch.Tensor] = {}  # g' of the client's previous step in this task
        self.last_betas: dict[str, float] = {}  # per tensor, the last step's beta = 1 - alpha (CPU runs only)
        self._live: dict[str, torch.Tensor] = {}  # the average on the training device during a round
        self._live_grad: dict[str, torch.Tensor] = {}
        self._beta_sum: torch.Tensor | None = None
        self._fallbacks: torch.Tensor | None = None
        self._updates = 0
        self._steps = 0

    def before_task(self, ctx: TaskContext) -> None:
        self.ema, self.prev_grad = {}, {}

    @torch.no_grad()
    def after_step(self, ctx: TaskContext) -> None:
        if not self._live and self.ema:
            self._live = {k: v.to(ctx.device) for k, v in self.ema.items()}
            self._live_grad = {k: v.to(ctx.device) for k, v in self.prev_grad.items()}
        betas: dict[str, torch.Tensor] = {}
        fallbacks: list[torch.Tensor] = []
        for k, p in ctx.model.named_parameters():
            if not p.requires_grad:
                continue
            if k not in self._live:
                self._live[k] = p.detach().clone()  # the average starts at the first step's weights
            avg, g, g_prev = self._live[k], p.grad, self._live_grad.get(k)
            if g is not None and g_prev is not None:
                a = (p - avg).abs().sum()
                b = g.abs().sum()
                c = (g - g_prev).abs().sum()
                rule = 2.0 * (1.0 + b) / (a * c)  # inf or nan when a c = 0: then the fallback
                ok = (rule > 0) & (rule < 1)  # on the device: no host sync per tensor
                alpha = torch.where(ok, rule, torch.full_like(rule, self.fallback))
                fallbacks.append(~ok)
            else:  # no previous gradient (first step of the task) or none this step
                alpha = torch.full((), self.fallback, device=p.device, dtype=p.dtype)
                fallbacks.append(torch.ones((), dtype=torch.bool, device=p.device))
            avg.mul_(1.0 - alpha).add_(alpha * p.detach())
            if g is not None:
                self._live_grad[k] = g.detach().clone()
            else:
                self._live_grad.pop(k, None)
            betas[k] = 1.0 - alpha
        if not betas:
            return
        # the round's metrics, summed on the device until after_round
        mean, n_fallback = torch.stack(list(betas.values())).mean(), torch.stack(fallbacks).sum()
        self._beta_sum = mean if self._beta_sum is None else self._beta_sum + mean
        self._fallbacks = n_fallback if self._fallbacks is None else self._fallbacks + n_fallback
        self._updates += len(betas)
        self._steps += 1
        self.last_betas = {k: float(b) for k, b in betas.items()} if ctx.device.type == "cpu" else {}

    @torch.no_grad()
    def after_round(self, ctx: TaskContext) -> None:
        if self._live:
            self.ema = {k: v.detach().cpu().clone() for k, v in self._live.items()}
            self.prev_grad = {k: v.detach().cpu().clone() for k, v in self._live_grad.items()}
        self._live, self._live_grad = {}, {}
        if self._beta_sum is not None and self._steps:
            ctx.metrics["ema-beta-mean"] = float(self._beta_sum) / self._steps
            ctx.metrics["ema-fallback-share"] = float(self._fallbacks or 0) / max(self._updates, 1)
        self._beta_sum, self._fallbacks, self._updates, self._steps = None, None, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "prev_grad": {k: v.clone() for k, v in self.prev_grad.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.prev_grad = {k: v.detach().cpu().clone() for k, v in state.get("prev_grad", {}).items()}
