"""A client's local computations for unlearning: Fisher and gradient sums, SGD / ascent steps.

Data arrive as parts of (task, x, y); a multi-head model scores each part with its
task's head (:func:`fedcl.trainer.task_logits`). SGD and ascent pool the parts into one
data set, so no task is fine-tuned after another.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.trainer import task_logits

ClassesOf = Callable[[int], "list[int] | None"]


def cap(x: torch.Tensor, y: torch.Tensor, max_samples: int | None,
        gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_samples`` rows, drawn without replacement (all rows when None)."""
    if max_samples is None or x.shape[0] <= max_samples:
        return x, y
    idx = torch.randperm(x.shape[0], generator=gen)[:max_samples].to(x.device)
    return x[idx], y[idx]


def fisher_sum(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task_id: int, multi_head: bool,
    task_classes: list[int] | None, batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Sum over samples of the squared per-sample gradient of the cross-entropy (diagonal empirical Fisher).

    Foster et al. (SSD, AAAI 2024) use the diagonal Fisher information as parameter
    importance; per-sample squares summed over clients divided by the total count is
    the Fisher of the union of the clients' data.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    out = {k: torch.zeros_like(v) for k, v in params.items()}
    if x.shape[0] == 0:
        return out
    was_training = model.training
    model.eval()  # dropout off: the importance of the deterministic model

    class _Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            return task_logits(self.inner, xb, task_id, multi_head, task_classes)

    wrapped = _Wrapped()
    pref = {f"inner.{k}": v for k, v in params.items()}
    bref = {f"inner.{k}": v for k, v in buffers.items()}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(wrapped, (p, bref), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for start in range(0, x.shape[0], batch_size):
        g = per_sample(pref, x[start : start + batch_size], y[start : start + batch_size])
        for k in out:
            out[k] += (g[f"inner.{k}"] ** 2).sum(0)
    model.train(was_training)
    return out


def gradient_sum(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task_id: int, multi_head: bool,
    task_classes: list[int] | None, batch_size: int = 512,
) -> dict[str, torch.Tensor]:
    """Sum over samples of the cross-entropy gradient (``n`` times the mean gradient), dropout off."""
    out = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    if x.shape[0] == 0:
        return out
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    for start in range(0, x.shape[0], batch_size):
        logits = task_logits(model, x[start : start + batch_size], task_id, multi_head, task_classes)
        loss = F.cross_entropy(logits, y[start : start + batch_size], reduction="sum")
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads, strict=True):
            if g is not None:
                out[k] += g.detach()
    model.train(was_training)
    return out


def pooled_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor, multi_head: bool,
                classes_of: ClassesOf) -> torch.Tensor:
    """Mean cross-entropy of a batch that may mix tasks (each sample scored by its task's head)."""
    if not multi_head:
        return F.cross_entropy(model(x), y)
    total = torch.zeros((), device=x.device)
    for t in torch.unique(tasks).tolist():
        m = tasks == t
        total = total + F.cross_entropy(task_logits(model, x[m], int(t), True, classes_of(int(t))), y[m],
                                        reduction="sum")
    return total / max(int(y.shape[0]), 1)


def sgd_steps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor, multi_head: bool,
    classes_of: ClassesOf, *, epochs: float, lr: float, batch_size: int, gen: torch.Generator,
    ascent: bool = False, max_loss: float | None = None,
) -> int:
    """``epochs`` (may be fractional) passes of SGD on ``(x, y)``; ``ascent`` maximises the loss.

    Gradient ascent stops once a batch loss exceeds ``max_loss``: an unbounded ascent
    destroys the model (Halimi et al., 2022, bound it with a ball around a reference).
    Returns the number of steps taken.
    """
    n = x.shape[0]
    if n == 0 or epochs <= 0:
        return 0
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    total = max(1, math.ceil(epochs * n / batch_size))
    steps, order, pos = 0, torch.randperm(n, generator=gen).to(x.device), 0
    while steps < total:
        if pos >= n:
            order, pos = torch.randperm(n, generator=gen).to(x.device), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        loss = pooled_loss(model, x[idx], y[idx], tasks[idx], multi_head, classes_of)
        if ascent and max_loss is not None and float(loss.item()) > max_loss:
            break
        opt.zero_grad(set_to_none=True)
        (-loss if ascent else loss).backward()
        opt.step()
        steps += 1
    return steps
