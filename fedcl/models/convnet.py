"""Small convolutional network (two or more conv blocks, one hidden linear layer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedcl.models.heads import Heads


class ConvNet(nn.Module):
    """Conv(3x3)-ReLU-MaxPool blocks followed by a linear layer and the head(s).

    Parameters
    ----------
    in_shape : tuple[int, ...]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Outputs per head.
    channels : Sequence[int], default (32, 64)
        Output channels of each conv block (each block halves height and width).
    hidden : int, default 256
        Width of the linear layer before the head.
    dropout : float, default 0.0
        Dropout before the head.
    num_heads : int, default 1
        Task-incremental heads (see :class:`Heads`).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        dropout: float = 0.0,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for out in channels:
            # bias=False: FOT/GPM project conv weights only; a bias-free conv keeps them exact.
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        self.head = Heads(hidden, num_classes, num_heads)

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.head(self.body(x), task_id)
