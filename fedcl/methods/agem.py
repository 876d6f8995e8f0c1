"""A-GEM: project the update so the average loss on the episodic memory does not increase."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import assign_flat_grad, flat_grad, logits_by_task
from fedcl.methods.base import CLMethod, TaskContext


class AGEM(CLMethod):
    """Averaged Gradient Episodic Memory.

    Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient Lifelong Learning with A-GEM",
    ICLR 2019.

    In ``after_backward`` the reference gradient ``g_ref`` of the loss on a buffer batch is
    computed; if the current gradient ``g`` conflicts with it (``g . g_ref < 0``), ``g`` is
    replaced by ``g - (g . g_ref / g_ref . g_ref) g_ref`` before the optimiser step. The
    memory holds samples of finished tasks only: at ``after_task`` the task's data is
    offered to a reservoir buffer, so ``g_ref`` never includes the task being learnt.

    Parameters
    ----------
    buffer_size : int, default 200
        Samples kept per client.
    ref_batch_size : int, default 64
        Buffer samples used for the reference gradient.
    """

    name = "agem"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, buffer_size: int = 200, ref_batch_size: int = 64) -> None:
        self.buffer_size = int(buffer_size)
        self.ref_batch_size = int(ref_batch_size)
        self.buffer = ReservoirBuffer(self.buffer_size)

    def after_backward(self, ctx: TaskContext) -> None:
        # reported by every client that trains (0 while the buffer is empty): SecAgg+ sums metrics slot by
        # slot, so a key that only some clients of a round report would stop the round
        ctx.metrics.setdefault("agem-projected", 0.0)
        if self.buffer.is_empty or self.ref_batch_size <= 0:
            return
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        g = flat_grad(params)
        batch = self.buffer.sample(self.ref_batch_size, generator=ctx.generator)
        x, y = batch["x"].to(ctx.device), batch["y"].to(ctx.device)
        with torch.enable_grad():
            ref_loss = F.cross_entropy(logits_by_task(ctx.model, x, batch["task_ids"], ctx.multi_head), y)
            # autograd.grad leaves the current .grad untouched
            ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True)
        g_ref = torch.cat(
            [(r if r is not None else torch.zeros_like(p)).reshape(-1) for r, p in zip(ref_grads, params, strict=True)]
        )
        dot = torch.dot(g, g_ref)
        conflict = float(dot) < 0.0
        ctx.metrics["agem-projected"] = ctx.metrics.get("agem-projected", 0.0) + float(conflict)
        if conflict:
            assign_flat_grad(params, g - dot / torch.dot(g_ref, g_ref).clamp_min(1e-12) * g_ref)

    def after_task(self, ctx: TaskContext) -> None:
        # a random order: if the data exceed the capacity, the kept subset is uniform
        gen_device = ctx.generator.device
        order = torch.randperm(int(ctx.x.shape[0]), generator=ctx.generator, device=gen_device).to(ctx.x.device)
        x, y = ctx.x[order], ctx.y[order]
        self.buffer.add(x, y, torch.full_like(y, ctx.task_id), generator=ctx.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
