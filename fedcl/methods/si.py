"""Synaptic Intelligence: per-weight importance from each weight's contribution to the loss decrease."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods._utils import snapshot, trainable
from fedcl.methods.base import CLMethod, TaskContext


class SI(CLMethod):
    """Synaptic Intelligence.

    Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017.

    Every local step adds the path integral ``omega += -g * (w_after - w_before)`` of the
    task-loss gradient ``g`` (read in ``after_backward``, with the method's own penalty
    gradient removed; the displacement is taken at the next step or in ``after_round``).
    At task end the importance grows by ``relu(omega) / (Delta^2 + xi)``, ``Delta`` the
    weights' displacement over the task, and the anchor ``w*`` moves to the current
    weights. Later tasks add ``si_c * sum Omega (w - w*)^2`` to the loss.
    Weight changes made by server aggregation are not the client's own trajectory and
    are left out of the path integral (it runs only between local steps).

    Parameters
    ----------
    si_c : float, default 0.5
        Strength of the surrogate penalty.
    xi : float, default 0.1
        Damping that keeps the importance finite for weights that barely moved.
    """

    name = "si"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, si_c: float = 0.5, xi: float = 0.1) -> None:
        self.si_c = float(si_c)
        self.xi = float(xi)
        self.omega: dict[str, torch.Tensor] = {}  # consolidated importance Omega
        self.anchor: dict[str, torch.Tensor] = {}  # w* of the last finished task
        self.path: dict[str, torch.Tensor] = {}  # running path integral of the current task
        self.task_start: dict[str, torch.Tensor] = {}
        self._pending: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (grad, w_before)
        self._dev: dict[str, torch.Tensor] | None = None

    def before_task(self, ctx: TaskContext) -> None:
        self.task_start = snapshot(ctx.model)
        self.path = {k: torch.zeros_like(v) for k, v in self.task_start.items()}

    def _on_device(self, ctx: TaskContext) -> dict[str, torch.Tensor]:
        if self._dev is None:
            # Omega and w* packed once per round (prefix keeps the two maps apart)
            self._dev = {f"o:{k}": v.to(ctx.device) for k, v in self.omega.items()}
            self._dev.update({f"a:{k}": v.to(ctx.device) for k, v in self.anchor.items()})
            self._dev.update({f"p:{k}": v.to(ctx.device) for k, v in self.path.items()})
        return self._dev

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if not self.omega or self.si_c == 0.0:
            return base_loss
        dev = self._on_device(ctx)
        penalty = base_loss.new_zeros(())
        for name, p in trainable(ctx.model):
            if f"o:{name}" in dev:
                penalty = penalty + (dev[f"o:{name}"] * (p - dev[f"a:{name}"]) ** 2).sum()
        return base_loss + self.si_c * penalty

    def _close_pending(self, ctx: TaskContext) -> None:
        """Add ``-g * delta`` of the step whose gradient is pending."""
        if not self._pending:
            return
        dev = self._on_device(ctx)
        with torch.no_grad():
            for name, p in trainable(ctx.model):
                if name in self._pending and f"p:{name}" in dev:
                    g, before = self._pending[name]
                    dev[f"p:{name}"] -= g * (p.detach() - before)
        self._pending = {}

    def after_backward(self, ctx: TaskContext) -> None:
        if not self.path:
            # a client restored mid-task without before_task (should not happen): start now
            self.before_task(ctx)
            self._dev = None
        self._close_pending(ctx)
        dev = self._on_device(ctx)
        with torch.no_grad():
            for name, p in trainable(ctx.model):
                if p.grad is None:
                    continue
                g = p.grad.detach().clone()
                if f"o:{name}" in dev and self.si_c != 0.0:
                    # the path integral measures the task loss; drop d/dw of our own penalty
                    g -= 2.0 * self.si_c * dev[f"o:{name}"] * (p.detach() - dev[f"a:{name}"])
                self._pending[name] = (g, p.detach().clone())

    def after_round(self, ctx: TaskContext) -> None:
        self._close_pending(ctx)
        if self._dev is not None:
            self.path = {k: self._dev[f"p:{k}"].cpu() for k in self.path}

    def after_task(self, ctx: TaskContext) -> None:
        end = snapshot(ctx.model)
        for name, w in end.items():
            delta = w - self.task_start.get(name, w)
            # a negative path integral means the weight moved against its gradient on net;
            # clipping keeps the penalty a convex, non-negative quadratic
            contrib = self.path.get(name, torch.zeros_like(w)).clamp(min=0.0) / (delta**2 + self.xi)
            self.omega[name] = self.omega[name] + contrib if name in self.omega else contrib
        self.anchor = end
        self.path = {}
        self.task_start = {}
        self._dev = None

    def state_dict(self) -> dict[str, Any]:
        return {
            key: {k: v.clone() for k, v in getattr(self, key).items()}
            for key in ("omega", "anchor", "path", "task_start")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("omega", "anchor", "path", "task_start"):
            setattr(self, key, {k: v.detach().cpu().clone() for k, v in state.get(key, {}).items()})
        self._pending = {}
        self._dev = None
