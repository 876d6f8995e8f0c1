"""Client side of federated unlearning: the ``query.unlearn`` handler and its local computations.

A query names an ``action`` and the data it runs on; the client splits its own
training data of the named tasks into a *forget* part (the whole client for a
client request, the forgotten class for a class request) and a *retain* part, and

* ``fisher``: returns the sums over its samples of the squared per-sample gradients
  (the empirical diagonal Fisher) on forget and on retain data, plus the counts.
  Only sums are needed by the server (SSD), so the reply can be securely aggregated;
* ``ascent``: gradient ascent on its forget data (returns the weights and the count);
* ``train``: plain SGD on its retain data (repair rounds, FedEraser calibration).

No query touches the client's continual-learning method state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from torch import nn
from torch.nn import functional as F

import fedcl.keys as keys
from fedcl.client.instruction import Instruction, workspace
from fedcl.data import Stream
from fedcl.errors import ConfigError
from fedcl.records import array_record, model_record
from fedcl.seeding import torch_generator
from fedcl.trainer import task_logits
from fedcl.unlearning import protocol


@dataclass
class TaskSplit:
    """A client's data of one task split into forget and retain parts."""

    task_id: int
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor


def drop_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` without the rows whose label is in ``classes`` (a served class request)."""
    if not classes:
        return x, y
    keep = ~torch.isin(y, torch.as_tensor(classes, dtype=y.dtype, device=y.device))
    return x[keep], y[keep]


def split_task(
    x: torch.Tensor, y: torch.Tensor, task_id: int, forget_all: bool, forget_classes: list[int],
    drop: list[int],
) -> TaskSplit:
    """Split one task's data: all of it is forgotten for a leaving client, else the forgotten classes."""
    x, y = drop_classes(x, y, drop)
    if forget_all:
        return TaskSplit(task_id, x, y, x[:0], y[:0])
    is_f = torch.isin(y, torch.as_tensor(forget_classes or [-1], dtype=y.dtype, device=y.device))
    return TaskSplit(task_id, x[is_f], y[is_f], x[~is_f], y[~is_f])


def _cap(
    x: torch.Tensor, y: torch.Tensor, max_samples: int | None, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
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


def sgd_steps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task_id: int, multi_head: bool,
    task_classes: list[int] | None, *, epochs: float, lr: float, batch_size: int, gen: torch.Generator,
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
        loss = F.cross_entropy(task_logits(model, x[idx], task_id, multi_head, task_classes), y[idx])
        if ascent and max_loss is not None and float(loss.item()) > max_loss:
            break
        opt.zero_grad(set_to_none=True)
        (-loss if ascent else loss).backward()
        opt.step()
        steps += 1
    return steps


def local_splits(stream: Stream, client_id: int, opts: dict[str, Any], device: torch.device) -> list[TaskSplit]:
    """The client's forget / retain split of every task named by the query."""
    forget_all = client_id in opts.get("forget_clients", [])
    out = []
    for t in opts["tasks"]:
        x, y = stream.client_data(int(t), client_id)
        out.append(split_task(x.to(device), y.to(device), int(t), forget_all,
                              list(opts.get("forget_classes", [])), list(opts.get("drop_classes", []))))
    return out


def handle(msg: Message, context: Context, instr: Instruction) -> Message:
    """The ``query.unlearn`` handler (see the module docstring for the actions)."""
    ws = workspace(instr, msg)
    stream, model, device, client_id = ws.stream, ws.model, ws.device, instr.client_id
    opts = protocol.options(instr.record)
    action = opts.get("action")
    if action not in protocol.ACTIONS:
        raise ConfigError("unlearn-action", action, f"one of {list(protocol.ACTIONS)}")
    splits = local_splits(stream, client_id, opts, device)
    mh = stream.multi_head
    def classes(t: int) -> list[int] | None:
        return list(stream.tasks[t].classes) if mh else None

    gen = torch_generator(instr.seed, "unlearn", action, client_id, instr.server_round, int(opts.get("salt", 0)))
    max_samples = opts.get("max_samples")
    bs = instr.cfg.train.batch_size
    metrics: dict[str, int | float | list[int] | list[float]] = {}
    content = RecordDict()
    if action == "fisher":
        f_sum = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
        r_sum = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
        nf = nr = 0
        retain_tasks = opts.get("retain_tasks")  # None: every task of the query
        for s in splits:
            xf, yf = _cap(s.x_forget, s.y_forget, max_samples, gen)
            xr, yr = _cap(s.x_retain, s.y_retain, max_samples, gen)
            if retain_tasks is not None and s.task_id not in retain_tasks:
                xr, yr = xr[:0], yr[:0]
            for acc, xx, yy in ((f_sum, xf, yf), (r_sum, xr, yr)):
                for k, v in fisher_sum(model, xx, yy, s.task_id, mh, classes(s.task_id)).items():
                    acc[k] += v
            nf, nr = nf + int(xf.shape[0]), nr + int(xr.shape[0])
        content[protocol.FISHER_FORGET] = array_record(f_sum, np.float32)
        content[protocol.FISHER_RETAIN] = array_record(r_sum, np.float32)
        metrics = {protocol.NUM_FORGET: nf, protocol.NUM_RETAIN: nr, keys.NUM_EXAMPLES: nf + nr}
    else:
        ascent = action == "ascent"
        n = 0
        for s in splits:
            x, y = (s.x_forget, s.y_forget) if ascent else (s.x_retain, s.y_retain)
            x, y = _cap(x, y, max_samples, gen)
            sgd_steps(model, x, y, s.task_id, mh, classes(s.task_id), epochs=float(opts["epochs"]),
                      lr=float(opts["lr"]), batch_size=bs, gen=gen, ascent=ascent,
                      max_loss=opts.get("max_loss"))
            n += int(x.shape[0])
        content[keys.ARRAYS] = model_record(model)
        metrics = {keys.NUM_EXAMPLES: n}
    content[keys.METRICS] = MetricRecord(metrics)
    if opts.get("report_client"):
        content[protocol.INFO] = protocol.client_info(client_id)
    return Message(content=content, reply_to=msg)
