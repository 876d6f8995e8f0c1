"""Stability-plasticity balanced EMA: the EMA coefficient set from gradients and weights."""

from __future__ import annotations

import torch

from fedcl.methods.base import TaskContext
from fedcl.methods.ema import EMA, float_state


class EMABalanced(EMA):
    """EMA of the client's weights whose coefficient ``beta`` is chosen at every optimiser step.

    Reference: Qiao et al., "Large Continual Instruction Assistant", ICML 2025
    (stable-plasticity balanced coefficient; official code github.com/JingyangQiao/CoIN).

    The EMA update is ``w*_s = beta_s w*_{s-1} + (1 - beta_s) w_s``, once per training
    step as in the paper. Its two ideal conditions are *plasticity*,
    ``L(w*_s) = L(w_s)`` (the average loses nothing on the data being learnt), and
    *stability*, ``w*_s = w*_{s-1}`` (the average does not move). With
    ``d = w*_{s-1} - w_s`` and ``g = grad L(w_s)`` (the step's own mini-batch gradient,
    so the rule costs no extra forward pass), a first-order Taylor expansion gives
    ``L(w*_s) - L(w_s) ~ beta_s g.d`` and ``w*_s - w*_{s-1} = -(1 - beta_s) d``.
    Balancing the two squared violations,

        min_beta  (beta g.d)^2 + lam (1 - beta)^2 ||d||^2
        =>  beta_s = lam ||d||^2 / (lam ||d||^2 + (g.d)^2) = lam / (lam + (g.u)^2),

    with ``u = d / ||d||``, solved per parameter tensor and clipped to
    ``[beta_min, beta_max]``: while the current task's gradient points along the way
    back to the average (stepping back would cost the task a lot) the average follows
    the new weights; once the task is learnt (``g.u ~ 0``) the average stays put. At
    the end of each task the model takes the EMA weights, as in the plain ``ema``
    baseline. Floating-point buffers (norm statistics) follow with ``beta_max`` once
    per round.

    Approximations (the paper's derivation and its exact scaling could not be checked
    against the full text here; this is a faithful reading of the abstract's recipe,
    "Taylor expansion of the loss ... balance weight determined by the gradients and
    learned parameters"): the plasticity / stability trade-off is one explicit
    constant ``lam`` (in squared loss-gradient units), and the instruction-grouping /
    LoRA expansion half of the paper is out of scope (no instructions or adapters).
    An earlier version updated once per federated round with the end-of-round
    gradient, which is near zero once a round has converged, so ``beta`` sat at
    ``beta_max`` and new tasks were never learnt.

    Parameters
    ----------
    lam : float, default 1.0
        Weight of the stability violation against the squared first-order loss change;
        larger keeps the average closer to the past.
    beta_min, beta_max : float, default 0.0, 0.999
        Clip range of each ``beta`` (per step, so ``beta_max`` is close to 1).
    """

    name = "ema_balanced"

    def __init__(self, lam: float = 1.0, beta_min: float = 0.0, beta_max: float = 0.999) -> None:
        if lam <= 0 or not 0.0 <= beta_min <= beta_max <= 1.0:
            raise ValueError("ema_balanced: need lam > 0 and 0 <= beta_min <= beta_max <= 1")
        super().__init__()  # the running average and its state; the fixed beta is replaced per step
        self.lam = float(lam)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.last_betas: dict[str, float] = {}
        self._live: dict[str, torch.Tensor] = {}  # the average on the training device during a round
        self._beta_sum: torch.Tensor | None = None
        self._steps = 0

    @torch.no_grad()
    def balanced_betas(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        """One ``beta`` per parameter tensor from its current gradient and its distance to the average."""
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
        if not self.ema:
            self.ema = float_state(ctx.model)
        if not self._live:
            self._live = {k: v.to(ctx.device) for k, v in self.ema.items()}
        betas = self.balanced_betas(ctx)
        params = dict(ctx.model.named_parameters())
        for k, beta in betas.items():
            self._live[k].mul_(beta).add_((1.0 - beta) * params[k].detach())
        step_mean = torch.stack(list(betas.values())).mean() if betas else None
        if step_mean is not None:
            self._beta_sum = step_mean if self._beta_sum is None else self._beta_sum + step_mean
            self._steps += 1
        self.last_betas = {k: float(b) for k, b in betas.items()} if ctx.device.type == "cpu" else {}

    @torch.no_grad()
    def after_round(self, ctx: TaskContext) -> None:
        if not self.ema:
            self.ema = float_state(ctx.model)
            return
        params = {k for k, _ in ctx.model.named_parameters()}
        for k, w in float_state(ctx.model).items():
            if k in self._live and k in params:
                self.ema[k] = self._live[k].detach().cpu().clone()
            else:  # buffers and untrained entries: the most stable choice
                self.ema[k].mul_(self.beta_max).add_(w, alpha=1.0 - self.beta_max)
        self._live = {}
        if self._beta_sum is not None and self._steps:
            ctx.metrics["ema-beta-mean"] = float(self._beta_sum) / self._steps
        self._beta_sum, self._steps = None, 0
