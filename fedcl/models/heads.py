"""Single- or multi-head classifier output shared by every model."""

from __future__ import annotations

import torch
from torch import nn


class Heads(nn.Module):
    """One linear output layer, or one per task (task-incremental multi-head).

    Parameters
    ----------
    in_features : int
        Width of the features that feed the head(s).
    num_classes : int
        Outputs of each head (labels stay global: class ``k`` is output ``k``).
    num_heads : int, default 1
        ``1`` is a shared single head; ``> 1`` adds one head per task id.
    bias : bool, default True
        Whether each head has a bias (GPM's and FOT's paper networks have none).
    """

    def __init__(self, in_features: int, num_classes: int, num_heads: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.heads = nn.ModuleList(nn.Linear(in_features, num_classes, bias=bias) for _ in range(num_heads))

    def forward(self, h: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if self.num_heads == 1:
            return self.heads[0](h)
        if task_id is None:
            raise ValueError("a multi-head model needs the task id at forward time")
        return self.heads[task_id](h)
