"""Experience Replay: mix every mini-batch with samples from a reservoir episodic memory."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import logits_by_task
from fedcl.methods.base import CLMethod, TaskContext


class ER(CLMethod):
    """Experience Replay with a reservoir buffer.

    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv:1902.10486, 2019.

    ``adapt_batch`` draws ``replay_batch_size`` samples from the buffer and appends them
    to the current mini-batch, then offers the current (never the replayed) samples to
    the buffer by reservoir sampling, so the memory stays a uniform sample of
    everything the client has trained on. With a multi-head model the replayed part of
    the loss is recomputed in ``loss`` through each sample's own task head.

    Parameters
    ----------
    buffer_size : int, default 200
        Samples kept per client.
    replay_batch_size : int, default 32
        Buffer samples appended to every mini-batch.
    """

    name = "er"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, buffer_size: int = 200, replay_batch_size: int = 32) -> None:
        self.buffer_size = int(buffer_size)
        self.replay_batch_size = int(replay_batch_size)
        self.buffer = ReservoirBuffer(self.buffer_size)
        self._n_current = 0
        self._replay_tids: torch.Tensor | None = None

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        self._n_current = int(x.shape[0])
        self._replay_tids = None
        replay = None
        if self.replay_batch_size > 0 and not self.buffer.is_empty:
            replay = self.buffer.sample(self.replay_batch_size, generator=ctx.generator)
        # inserted after sampling, so a batch never replays itself
        self.buffer.add(x, y, torch.full_like(y, ctx.task_id), generator=ctx.generator)
        if replay is None:
            return x, y
        self._replay_tids = replay["task_ids"]
        return torch.cat([x, replay["x"].to(x.device)]), torch.cat([y, replay["y"].to(y.device)])

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if not ctx.multi_head or self._replay_tids is None:
            return base_loss  # single head: the trainer's CE already covers the joint batch
        assert ctx.batch_x is not None
        n = self._n_current
        # the trainer ran replayed samples through the current head: redo them with their own
        replay_logits = logits_by_task(ctx.model, ctx.batch_x[n:], self._replay_tids, True)
        total = F.cross_entropy(logits[:n], y[:n], reduction="sum") + F.cross_entropy(
            replay_logits, y[n:], reduction="sum"
        )
        return total / y.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
