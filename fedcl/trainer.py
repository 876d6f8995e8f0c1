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


def train_local(method: CLMethod, ctx: TaskContext, cfg: TrainConfig) -> TrainResult:
    """Run ``cfg.local_epochs`` epochs of SGD on ``ctx.x, ctx.y`` with the method's hooks."""
    model = ctx.model
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    ctx.optimizer = opt
    n = ctx.x.shape[0]
    tot_loss, tot_correct, tot_seen, steps = 0.0, 0, 0, 0
    prox_ref = [ctx.global_params[k] for k, _ in model.named_parameters()] if cfg.proximal_mu > 0 else []
    for _ in range(cfg.local_epochs):
        order = torch.randperm(n, generator=ctx.generator).to(ctx.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            bx, by = method.adapt_batch(ctx.x[idx], ctx.y[idx], ctx)
            ctx.batch_x, ctx.batch_y = bx, by
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
            with torch.no_grad():
                tot_loss += float(logged.item()) * by.shape[0]
                tot_correct += int((logits.argmax(1) == by).sum().item())
                tot_seen += by.shape[0]
            steps += 1
    method.after_round(ctx)
    ctx.batch_x = ctx.batch_y = None
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
