"""Stability-plasticity balanced EMA: the EMA coefficient set at every step from weights and gradients."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import TaskContext
from fedcl.methods.ema import EMA, float_state

RULES = ("coin", "abstract")


class EMABalanced(EMA):
    """EMA of the client's weights whose coefficient is chosen per parameter tensor at every optimiser step.

    Reference: Qiao et al., "Large Continual Instruction Assistant", ICML 2025; rule
    ``coin`` follows the authors' code, github.com/JingyangQiao/CoIN, file
    ``CoIN/peft/tuners/lora.py``, ``LoraModel.ema_update`` (called right after
    ``optimizer.step()`` in ``llava/train/transformers/trainer.py``; ``ema_replace``
    loads the average into the model when a task's training ends).

    ``rule: coin`` (default). After every optimiser step, for every trainable
    parameter tensor ``p`` with average ``p*``, this step's gradient ``g`` and the
    previous step's gradient ``g'``::

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

    ``rule: abstract`` is this project's earlier reading of the paper's abstract:
    before each step, ``beta = lam ||d||^2 / (lam ||d||^2 + (g.d)^2)`` per tensor with
    ``d = p* - p`` (from a first-order Taylor balance of the plasticity and stability
    conditions), clipped to ``[beta_min, beta_max]``; the average runs across tasks and
    buffers follow with ``beta_max`` once per round.

    Parameters
    ----------
    rule : str, default "coin"
        ``"coin"`` (the authors' code) or ``"abstract"``.
    fallback : float, default 0.01
        ``coin``: weight of the new weights when ``alpha`` leaves (0, 1) (the authors' 0.01).
    lam : float, default 1.0
        ``abstract``: weight of the stability violation.
    beta_min, beta_max : float, default 0.0, 0.999
        ``abstract``: clip range of each ``beta``.
    """

    name = "ema_balanced"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        rule: str = "coin",
        fallback: float = 0.01,
        lam: float = 1.0,
        beta_min: float = 0.0,
        beta_max: float = 0.999,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"ema_balanced: rule must be one of {list(RULES)}, got {rule!r}")
        if not 0.0 < fallback <= 1.0:
            raise ValueError(f"ema_balanced: fallback must lie in (0, 1], got {fallback}")
        if lam <= 0 or not 0.0 <= beta_min <= beta_max <= 1.0:
            raise ValueError("ema_balanced: need lam > 0 and 0 <= beta_min <= beta_max <= 1")
        super().__init__()  # the running average and its state; the fixed beta is replaced per step
        self.rule = rule
        self.fallback = float(fallback)
        self.lam = float(lam)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.prev_grad: dict[str, torch.Tensor] = {}  # coin: g' of the client's previous step in this task
        self.last_betas: dict[str, float] = {}  # per tensor, the last step's beta = 1 - alpha (CPU runs only)
        self._live: dict[str, torch.Tensor] = {}  # the average on the training device during a round
        self._live_grad: dict[str, torch.Tensor] = {}
        self._beta_sum: torch.Tensor | None = None
        self._fallbacks: torch.Tensor | None = None
        self._updates = 0
        self._steps = 0

    # ---------------------------------------------------------------- coin (the authors' rule)

    def before_task(self, ctx: TaskContext) -> None:
        if self.rule == "coin":
            self.ema, self.prev_grad = {}, {}

    @torch.no_grad()
    def after_step(self, ctx: TaskContext) -> None:
        if self.rule != "coin":
            return
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
        self._record(betas, ctx, torch.stack(fallbacks).sum() if fallbacks else None)

    # ---------------------------------------------------------------- abstract (earlier reading)

    @torch.no_grad()
    def balanced_betas(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        """``abstract``: one ``beta`` per parameter tensor from its gradient and its distance to the average."""
        betas: dict[str, torch.Tensor] = {}
        for k, p in ctx.model.named_parameters():
            if not p.requires_grad or p.grad is None or k not in self._live:
                continue
            d = self._live[k] - p
            dd = d.pow(2).sum()
            gd = (p.grad * d).sum()
            beta = self.lam * dd / (self.lam * dd + gd * gd)
            # d = 0 (the average is the model): nothing to trade off, keep the past
            beta = torch.where(dd > 0, beta, torch.ones_like(beta))
            betas[k] = beta.clamp(self.beta_min, self.beta_max)
        return betas

    @torch.no_grad()
    def after_backward(self, ctx: TaskContext) -> None:
        if self.rule != "abstract":
            return
        if not self.ema:
            self.ema = float_state(ctx.model)
        if not self._live:
            self._live = {k: v.to(ctx.device) for k, v in self.ema.items()}
        betas = self.balanced_betas(ctx)
        params = dict(ctx.model.named_parameters())
        for k, beta in betas.items():
            self._live[k].mul_(beta).add_((1.0 - beta) * params[k].detach())
        self._record(betas, ctx, None)

    # ---------------------------------------------------------------- both

    def _record(self, betas: dict[str, torch.Tensor], ctx: TaskContext, fallbacks: torch.Tensor | None) -> None:
        """Running sums for the round's metrics (kept on the device until ``after_round``)."""
        if not betas:
            return
        mean = torch.stack(list(betas.values())).mean()
        self._beta_sum = mean if self._beta_sum is None else self._beta_sum + mean
        if fallbacks is not None:
            self._fallbacks = fallbacks if self._fallbacks is None else self._fallbacks + fallbacks
        self._updates += len(betas)
        self._steps += 1
        self.last_betas = {k: float(b) for k, b in betas.items()} if ctx.device.type == "cpu" else {}

    @torch.no_grad()
    def after_round(self, ctx: TaskContext) -> None:
        if self.rule == "coin":
            self.ema = {k: v.detach().cpu().clone() for k, v in self._live.items()} if self._live else self.ema
            self.prev_grad = {k: v.detach().cpu().clone() for k, v in self._live_grad.items()}
        elif not self.ema:
            self.ema = float_state(ctx.model)
        else:
            params = {k for k, _ in ctx.model.named_parameters()}
            for k, w in float_state(ctx.model).items():
                if k in self._live and k in params:
                    self.ema[k] = self._live[k].detach().cpu().clone()
                else:  # buffers and untrained entries: the most stable choice
                    self.ema[k].mul_(self.beta_max).add_(w, alpha=1.0 - self.beta_max)
        self._live, self._live_grad = {}, {}
        if self._beta_sum is not None and self._steps:
            ctx.metrics["ema-beta-mean"] = float(self._beta_sum) / self._steps
            if self.rule == "coin":
                ctx.metrics["ema-fallback-share"] = float(self._fallbacks or 0) / max(self._updates, 1)
        self._beta_sum, self._fallbacks, self._updates, self._steps = None, None, 0, 0

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.rule == "coin":
            state["prev_grad"] = {k: v.clone() for k, v in self.prev_grad.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.prev_grad = {k: v.detach().cpu().clone() for k, v in state.get("prev_grad", {}).items()}
