"""Unbias Experience Replay: cosine logits for new samples, dot-product logits for replay."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import logits_by_task
from fedcl.methods.base import CLMethod, TaskContext


class UER(CLMethod):
    """Unbias Experience Replay (UER).

    Reference: Lin et al., "UER: A Heuristic Bias Addressing Approach for Online
    Continual Learning", ACM MM 2024 (github.com/FelixHuiweiLin/UER).

    A dot-product logit ``w_c . f + b_c = ||w_c|| ||f|| cos(w_c, f) + b_c`` factors into
    a norm and an angle. The bias towards the newest classes sits mainly in the angle
    factor, while the norm factor carries what was learnt before. UER therefore learns
    the current samples from the angle alone, with cosine logits
    ``s * cos(w_c, f)`` (features and weight rows L2-normalised, no bias), and replays
    buffer samples with the full dot-product logits::

        loss = CE(s cos(W, f(x_cur)), y_cur) + CE(W f(x_buf) + b, y_buf)

    How it plugs into the hooks: ``adapt_batch`` appends ``replay_batch_size`` buffer
    samples to the batch and remembers how many samples are current; ``loss`` discards
    the trainer's plain cross-entropy, takes the replayed rows of the trainer's
    (dot-product) logits as they are and, for the current rows, runs ``model.body``
    once more to get the features and applies the normalised head weights itself (one
    extra body pass on the current samples, no hooks left on the model). Multi-head
    models use the current task's head (classes masked as in ``task_logits``) and
    recompute the replayed rows with each sample's own head.

    Parameters
    ----------
    buffer_size : int, default 200
        Replay samples kept per client (reservoir sampling).
    replay_batch_size : int, default 32
        Buffer samples appended to each mini-batch.
    scale : float, default 16.0
        Scale ``s`` of the cosine logits (a temperature: cosines live in [-1, 1]).
    """

    name = "uer"
    # the angle / norm split removes the bias towards new classes: a permuted domain brings none
    scenarios = frozenset({"class_incremental", "task_incremental"})
    blurry = True

    def __init__(self, buffer_size: int = 200, replay_batch_size: int = 32, scale: float = 16.0) -> None:
        self.buffer_size = int(buffer_size)
        self.replay_batch_size = int(replay_batch_size)
        self.scale = float(scale)
        self.buffer = ReservoirBuffer(self.buffer_size)
        self._n_current = 0
        self._replay_tids: torch.Tensor | None = None

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        self._n_current = x.shape[0]
        self._replay_tids = None
        replay = None
        if self.replay_batch_size > 0 and not self.buffer.is_empty:
            replay = self.buffer.sample(self.replay_batch_size, generator=ctx.generator)
        if self.buffer_size > 0:
            # added after sampling, so a batch never replays itself
            tids = torch.full_like(y, ctx.task_id)
            self.buffer.add(x.detach().cpu(), y.detach().cpu(), tids.cpu(), generator=ctx.generator)
        if replay is None:
            return x, y
        self._replay_tids = replay["task_ids"]
        return torch.cat([x, replay["x"].to(x.device)]), torch.cat([y, replay["y"].to(y.device)])

    def cosine_logits(self, model: nn.Module, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        """``s * cos(w_c, f(x))`` for every class ``c`` of the head used for ``ctx.task_id``."""
        head = cast(nn.Linear, model.get_submodule(f"head.heads.{ctx.task_id if ctx.multi_head else 0}"))
        feats = F.normalize(model.body(x), dim=1)  # type: ignore[operator]
        logits = self.scale * feats @ F.normalize(head.weight, dim=1).t()
        if ctx.multi_head:
            mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
            mask[torch.as_tensor(ctx.task_classes, device=logits.device)] = 0.0
            logits = logits + mask
        return logits

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        assert ctx.batch_x is not None
        n = self._n_current
        loss = F.cross_entropy(self.cosine_logits(ctx.model, ctx.batch_x[:n], ctx), y[:n])
        if y.shape[0] == n:
            return loss
        replay_logits = logits[n:]
        if ctx.multi_head and self._replay_tids is not None:
            # each replayed sample goes through the head of the task it came from
            replay_logits = logits_by_task(ctx.model, ctx.batch_x[n:], self._replay_tids, True)
        return loss + F.cross_entropy(replay_logits, y[n:])

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
