"""Gradient Projection Memory: keep new gradients orthogonal to old tasks' input subspaces."""

from __future__ import annotations

from typing import Any

import torch

import fedcl.subspace as subspace
from fedcl.methods.base import CLMethod, TaskContext


class GPM(CLMethod):
    """Gradient Projection Memory (GPM).

    Reference: Saha, Garg and Roy, "Gradient Projection Memory for Continual
    Learning", ICLR 2021.

    After each task the client takes the inputs of every projectable layer on (up to
    ``max_samples`` of) its task data, removes what the layer's basis ``U_l`` already
    spans, and adds the leading left singular vectors of that residual until the
    basis explains a fraction ``threshold`` of the inputs' energy (GPM's criterion
    ``||U U^T A||^2 + ||R_k||^2 >= threshold ||A||^2``). While learning later tasks, each projected weight's gradient is
    replaced by ``g - g U_l U_l^T``, so the layer's response to inputs of old tasks
    does not change. The layer inputs, residual, basis growth and projection all come
    from :mod:`fedcl.subspace` (shared with FOT's server-side projection).

    Parameters
    ----------
    threshold : float, default 0.97
        Energy threshold of the first task.
    threshold_increment : float, default 0.003
        Added to the threshold after every task (capped below 1), as in GPM's
        CIFAR-100 set-up.
    max_samples : int, default 300
        Task samples used to build the layer representation matrices.
    freeze_bias : bool, default True
        Zero the bias gradients of layers that have a basis, as the official code
        does after the first task (a bias moves old tasks' outputs too).
    """

    name = "gpm"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        threshold: float = 0.97,
        threshold_increment: float = 0.003,
        max_samples: int = 300,
        freeze_bias: bool = True,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"gpm: threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.threshold_increment = float(threshold_increment)
        self.max_samples = int(max_samples)
        self.freeze_bias = bool(freeze_bias)
        self.bases: dict[str, torch.Tensor] = {}
        self.tasks_done = 0

    def current_threshold(self) -> float:
        return min(self.threshold + self.tasks_done * self.threshold_increment, 0.9999)

    def after_backward(self, ctx: TaskContext) -> None:
        if not self.bases:
            return
        subspace.project_gradients(ctx.model, self.bases)
        if self.freeze_bias:
            # a bias shifts the layer's output for every input, old tasks' included
            for name, layer in subspace.projectable_layers(ctx.model).items():
                bias = getattr(layer, "bias", None)
                if name in self.bases and bias is not None and bias.grad is not None:
                    bias.grad.zero_()

    @torch.no_grad()
    def after_task(self, ctx: TaskContext) -> None:
        layers = subspace.projectable_layers(ctx.model)
        idx = torch.randperm(ctx.x.shape[0], generator=ctx.generator)[: self.max_samples].to(ctx.device)
        inputs = subspace.layer_inputs(ctx.model, layers, ctx.x[idx], generator=ctx.generator)
        eps = self.current_threshold()
        occ: dict[str, dict[str, Any]] = {}
        for name, a in inputs.items():
            total = float(a.double().pow(2).sum())
            if total == 0.0:
                continue
            basis = self.bases.get(name, subspace.empty_basis(a.shape[0]))
            res = subspace.residual(a, basis)
            # GPM's criterion ||U U^T A||^2 + ||R_k||^2 >= eps ||A||^2 is grow_basis's rule with
            # the exact residual as the "sketch" and r = ||R||^2 / ||A||^2 (squared energy ratio)
            ratio = float(res.double().pow(2).sum()) / total
            self.bases[name] = subspace.grow_basis(basis, res, ratio, eps).cpu()
            occ[name] = subspace.occupancy(self.bases[name].shape[1], a.shape[0],
                                           subspace.energy_threshold(ratio, eps))
        self.tasks_done += 1
        ctx.metrics["gpm-basis-dims"] = float(sum(u.shape[1] for u in self.bases.values()))
        # per layer: basis size, input dimension and eps' (the server's occupancy table, fedcl/fot/occupancy.py)
        ctx.metrics.update(subspace.occupancy_metrics(occ))

    def state_dict(self) -> dict[str, Any]:
        return {"bases": {k: v.clone() for k, v in self.bases.items()}, "tasks_done": self.tasks_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bases = {k: v.detach().cpu().clone() for k, v in state.get("bases", {}).items()}
        self.tasks_done = int(state.get("tasks_done", 0))
