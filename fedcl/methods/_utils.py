"""Helpers shared by several methods: flat gradients, replay logits, parameter snapshots."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods.base import TaskContext
from fedcl.trainer import task_logits


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs the optimiser updates."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the trainable parameters (a method-state anchor)."""
    return {n: p.detach().cpu().clone() for n, p in trainable(model)}


def flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    """The ``.grad`` of ``params`` as one vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def assign_flat_grad(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Write the vector ``flat`` back into the ``.grad`` of ``params`` (inverse of ``flat_grad``)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def logits_by_task(model: nn.Module, x: torch.Tensor, task_ids: torch.Tensor, multi_head: bool) -> torch.Tensor:
    """Logits of replayed samples, each through the head of the task it came from.

    Single-head models take one forward pass. Multi-head outputs are left unmasked:
    stored logits must stay finite (a ``-inf`` mask would turn an MSE into NaN), and
    the labels are global so cross-entropy on a whole head is still well defined.
    """
    if not multi_head:
        return model(x)
    tids = task_ids.to(x.device)
    out: torch.Tensor | None = None
    for t in torch.unique(tids).tolist():
        idx = (tids == t).nonzero(as_tuple=True)[0]
        part = task_logits(model, x[idx], int(t), True, None)
        if out is None:
            out = part.new_empty((x.shape[0], part.shape[1]))
        out[idx] = part
    assert out is not None
    return out


def empirical_fisher(ctx: TaskContext, max_samples: int) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher ``mean_i (d log p(y_i | x_i) / d w)^2`` of ``ctx.model`` (CPU tensors).

    Estimated on at most ``max_samples`` random samples of ``ctx.x`` (drawn with
    ``ctx.generator``); used by EWC and FedCurv.
    """
    model = ctx.model
    params = trainable(model)
    n = min(max_samples, int(ctx.x.shape[0]))
    gen_device = ctx.generator.device
    idx = torch.randperm(int(ctx.x.shape[0]), generator=ctx.generator, device=gen_device)[:n].to(ctx.x.device)
    fisher = {name: torch.zeros_like(p) for name, p in params}
    was_training = model.training
    # eval mode: batch-norm cannot normalise a single sample, and dropout would add noise
    model.eval()
    with torch.enable_grad():
        for i in idx.tolist():
            logits = task_logits(model, ctx.x[i : i + 1], ctx.task_id, ctx.multi_head, ctx.task_classes)
            # per-sample gradients: the Fisher is a mean of squares, not the square of a mean
            loss = F.cross_entropy(logits, ctx.y[i : i + 1])
            grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
            for (name, _), g in zip(params, grads, strict=True):
                if g is not None:
                    fisher[name] += g.detach() ** 2
    model.train(was_training)
    return {name: (f / max(n, 1)).cpu() for name, f in fisher.items()}
