"""Experience Replay plus online EWC in one client: a replay buffer and a Fisher penalty together."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods.base import CLMethod, TaskContext
from fedcl.methods.er import ER
from fedcl.methods.ewc import EWC


class ErEwc(CLMethod):
    """ER's reservoir replay (Chaudhry et al., arXiv:1902.10486, 2019) with online EWC's penalty.

    Online EWC: Kirkpatrick et al., PNAS 2017, in the online form of Schwarz et al., ICML 2018
    ("Progress & Compress"). Each mini-batch is mixed with replayed samples (ER), and the loss of the
    mixed batch gets EWC's quadratic penalty around the anchor of the previous tasks. The client
    state is both: the buffer (``buffer_size`` samples) and the Fisher diagonal and anchor (two
    copies of the model), which makes this the heavy-state method of the scale benchmark
    (simulations/benchmarks/scale.py).

    Parameters
    ----------
    buffer_size, replay_batch_size : int
        ER's memory size and replayed samples per mini-batch.
    ewc_lambda, gamma : float
        EWC's penalty weight and the online decay of the accumulated Fisher.
    fisher_samples : int
        Samples used to estimate the Fisher at each task's end.
    max_penalty_step : float | None
        EWC's stability guard (``lr * ewc_lambda * F`` capped per weight; see :class:`EWC`).
    """

    name = "er_ewc"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        buffer_size: int = 200,
        replay_batch_size: int = 32,
        ewc_lambda: float = 100.0,
        gamma: float = 1.0,
        fisher_samples: int = 256,
        max_penalty_step: float | None = 1.0,
    ) -> None:
        self.er = ER(buffer_size, replay_batch_size)
        self.ewc = EWC(ewc_lambda, gamma, fisher_samples, max_penalty_step)

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.er.adapt_batch(x, y, ctx)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        return self.ewc.loss(logits, y, self.er.loss(logits, y, base_loss, ctx), ctx)

    def after_task(self, ctx: TaskContext) -> None:
        self.ewc.after_task(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"er": self.er.state_dict(), "ewc": self.ewc.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.er.load_state_dict(state.get("er", {}))
        self.ewc.load_state_dict(state.get("ewc", {}))
