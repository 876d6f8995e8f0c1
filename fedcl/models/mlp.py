"""Multi-layer perceptron (FOT's PMNIST model is ``hidden=[400, 400, 400], dropout=[0.2, 0.5, 0.5]``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fedcl.models.heads import Heads


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs.

    Parameters
    ----------
    in_shape : tuple[int, ...]
        Shape of one input sample, e.g. ``(1, 28, 28)``.
    num_classes : int
        Outputs per head.
    hidden : Sequence[int], default (256, 256)
        Hidden layer widths.
    dropout : float | Sequence[float], default 0.0
        Dropout after every hidden layer, or one rate per hidden layer (FOT's official
        MLP: 0.2 after the first, 0.5 after the others).
    num_heads : int, default 1
        Task-incremental heads (see :class:`Heads`).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float | Sequence[float] = 0.0,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        widths = [math.prod(in_shape), *hidden]
        rates = [float(dropout)] * len(hidden) if isinstance(dropout, (int, float)) else [float(p) for p in dropout]
        if len(rates) != len(hidden):
            raise ValueError(f"dropout has {len(rates)} rates for {len(hidden)} hidden layers")
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(widths) - 1):
            layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
            if rates[i] > 0:
                layers.append(nn.Dropout(rates[i]))
        self.body = nn.Sequential(*layers)
        self.head = Heads(widths[-1], num_classes, num_heads)

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.head(self.body(x), task_id)
