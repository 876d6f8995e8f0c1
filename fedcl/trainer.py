"""Local training loop (owns the optimiser, calls the method hooks) and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.errors import ConfigError
from fedcl.methods.base import CLMethod, TaskContext


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", name, "no CUDA device is visible; use 'auto' or 'cpu'")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError("device", name, "use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return torch.device(name)


@dataclass
class TrainConfig:
    """Local optimisation settings sent by the server each round.

    Parameters
    ----------
    lr : float
        SGD learning rate.
    local_epochs : int
        Passes over the client's current-task data per round.
    batch_size : int
        Mini-batch size.
    momentum, weight_decay : float
        SGD momentum and L2 weight decay.
    proximal_mu : float
        FedProx proximal coefficient (0 disables the term).
    """

    lr: float
    local_epochs: int
    batch_size: int
    momentum: float
    weight_decay: float
    proximal_mu: float


@dataclass
class TrainResult:
    """Averages over the local steps of one client round."""

    loss: float
    acc: float
    num_examples: int
    steps: int


def task_logits(
    model: nn.Module, x: torch.Tensor, task_id: int, multi_head: bool, task_classes: list[int] | None
) -> torch.Tensor:
    """Forward pass; task-incremental models pick their head and mask other classes."""
    if not multi_head:
        return model(x)
    logits = model(x, task_id)
    if task_classes is not None:
        mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
        mask[torch.as_tensor(task_classes, device=logits.device)] = 0.0
        logits = logits + mask
    return logits


def _head_classes(ctx: TaskContext, y: torch.Tensor, task_ids: torch.Tensor) -> dict[int, list[int]]:
    """Each task's class mask: the current task's from ``ctx``, others from ``ctx.classes_of`` or their labels."""
    out: dict[int, list[int]] = {}
    for t in torch.unique(task_ids).tolist():
        if t == ctx.task_id:
            out[t] = list(ctx.task_classes)
        elif ctx.classes_of is not None:
            out[t] = list(ctx.classes_of(int(t)))
        else:
            out[t] = sorted(torch.unique(y[task_ids == t]).tolist())
    return out


def _logits_per_task(model: nn.Module, x: torch.Tensor, task_ids: torch.Tensor, classes: dict[int, list[int]]
                     ) -> torch.Tensor:
    """Multi-head logits with every sample through its own task's head and mask."""
    out: torch.Tensor | None = None
    for t in torch.unique(task_ids).tolist():
        idx = (task_ids == t).nonzero(as_tuple=True)[0]
        part = task_logits(model, x[idx], int(t), True, classes.get(int(t)))
        if out is None:
            out = part.new_empty((x.shape[0], part.shape[1]))
        out[idx] = part
    assert out is not None
    return out


def train_local(method: CLMethod, ctx: TaskContext, cfg: TrainConfig) -> TrainResult:
    """Run ``cfg.local_epochs`` epochs of SGD with the method's hooks.

    The epochs run over ``method.train_data(ctx)`` when the method supplies data
    (with each sample's task id: on a multi-head model every sample is trained
    through its own head), else over the current task's ``ctx.x, ctx.y``.
    """
    model = ctx.model
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    ctx.optimizer = opt
    supplied = method.train_data(ctx)
    x, y, tids = supplied if supplied is not None else (ctx.x, ctx.y, None)
    # per-sample heads only matter when the method mixes tasks on a multi-head model
    heads = _head_classes(ctx, y, tids) if tids is not None and ctx.multi_head else None
    n = x.shape[0]
    tot_loss, tot_correct, tot_seen, steps = 0.0, 0, 0, 0
    prox_ref = [ctx.global_params[k] for k, _ in model.named_parameters()] if cfg.proximal_mu > 0 else []
    for _ in range(cfg.local_epochs):
        order = torch.randperm(n, generator=ctx.generator).to(ctx.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            bx, by = method.adapt_batch(x[idx], y[idx], ctx)
            ctx.batch_x, ctx.batch_y, ctx.fresh_rows = bx, by, int(idx.shape[0])
            if heads is not None and tids is not None:
                # rows a method appended in adapt_batch go through the current task's head, as without task ids
                extra = torch.full((bx.shape[0] - idx.shape[0],), ctx.task_id, dtype=tids.dtype, device=tids.device)
                logits = _logits_per_task(model, bx, torch.cat([tids[idx], extra]), heads)
            else:
                logits = task_logits(model, bx, ctx.task_id, ctx.multi_head, ctx.task_classes)
            base = F.cross_entropy(logits, by)
            loss = method.loss(logits, by, base, ctx)
            # logged: the method's objective (a replay method recomputes the loss of replayed rows,
            # whose classes the current head masks to -inf in `base` for multi-head models)
            logged = loss.detach()
            if prox_ref:
                # FedProx (Li et al., 2020): mu/2 ||w - w_global||^2 keeps clients near the server.
                prox = sum(((p - r) ** 2).sum() for p, r in zip(model.parameters(), prox_ref, strict=True))
                loss = loss + 0.5 * cfg.proximal_mu * prox
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward(ctx)
            opt.step()
            method.after_step(ctx)
            with torch.no_grad():
                tot_loss += float(logged.item()) * by.shape[0]
                tot_correct += int((logits.argmax(1) == by).sum().item())
                tot_seen += by.shape[0]
            steps += 1
    method.after_round(ctx)
    ctx.batch_x = ctx.batch_y = ctx.fresh_rows = None
    # the weight of this reply in FedAvg: the samples the round's epochs ran over
    return TrainResult(
        loss=tot_loss / max(tot_seen, 1), acc=tot_correct / max(tot_seen, 1), num_examples=n, steps=steps
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task_id: int = 0,
    multi_head: bool = False,
    task_classes: list[int] | None = None,
    batch_size: int = 2048,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    tot_loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        bx = x[start : start + batch_size].to(device, non_blocking=True)
        by = y[start : start + batch_size].to(device, non_blocking=True)
        logits = task_logits(model, bx, task_id, multi_head, task_classes)
        tot_loss += float(F.cross_entropy(logits, by, reduction="sum").item())
        correct += int((logits.argmax(1) == by).sum().item())
    model.train(was_training)
    n = max(int(x.shape[0]), 1)
    return tot_loss / n, correct / n
