"""DER++: replay buffered samples with both their stored logits (distillation) and labels."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import logits_by_task
from fedcl.methods.base import CLMethod, TaskContext


class DERPP(CLMethod):
    """Dark Experience Replay++.

    Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
    Baseline", NeurIPS 2020.

    The reservoir buffer stores ``(x, y, task id, logits)`` of past mini-batches, the
    logits being the model's output when the sample was seen. ``loss`` adds
    ``alpha * MSE(f(x1), z1) + beta * CE(f(x2), y2)`` on two independent buffer draws,
    then offers the current batch (with its detached logits) to the buffer. Multi-head
    models store and match the unmasked output of the sample's own task head.

    Parameters
    ----------
    buffer_size : int, default 200
        Samples kept per client.
    alpha : float, default 0.3
        Weight of the logit-matching (dark knowledge) term.
    beta : float, default 0.5
        Weight of the label replay term.
    replay_batch_size : int, default 32
        Samples in each of the two buffer draws.
    """

    name = "derpp"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self, buffer_size: int = 200, alpha: float = 0.3, beta: float = 0.5, replay_batch_size: int = 32
    ) -> None:
        self.buffer_size = int(buffer_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.replay_batch_size = int(replay_batch_size)
        self.buffer = ReservoirBuffer(self.buffer_size)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        assert ctx.batch_x is not None
        x = ctx.batch_x
        total = base_loss
        if not self.buffer.is_empty and self.replay_batch_size > 0:
            if self.alpha != 0.0:
                b1 = self.buffer.sample(self.replay_batch_size, generator=ctx.generator)
                out1 = logits_by_task(ctx.model, b1["x"].to(x.device), b1["task_ids"], ctx.multi_head)
                total = total + self.alpha * F.mse_loss(out1, b1["logits"].to(x.device))
            if self.beta != 0.0:
                b2 = self.buffer.sample(self.replay_batch_size, generator=ctx.generator)
                out2 = logits_by_task(ctx.model, b2["x"].to(x.device), b2["task_ids"], ctx.multi_head)
                total = total + self.beta * F.cross_entropy(out2, b2["y"].to(x.device))
        if self.buffer_size > 0:
            # stored after sampling, so a batch never replays itself; multi-head logits are
            # masked with -inf by the trainer, so the raw head output is stored instead
            with torch.no_grad():
                z = ctx.model(x, ctx.task_id) if ctx.multi_head else logits
            self.buffer.add(x, y, torch.full_like(y, ctx.task_id), logits=z.detach(), generator=ctx.generator)
        return total

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
