"""The AlexNet-style network of GPM and FOT for 10-split CIFAR-100 (``model=alexnet``)."""

from __future__ import annotations

import torch
from torch import nn

from fedcl.errors import ConfigError
from fedcl.models.heads import Heads


class AlexNet(nn.Module):
    """Three bias-free conv layers and two bias-free 2048-wide linear layers, then the task heads.

    Reference: layer for layer as ``model/alexnet.py`` of FOT's official code
    (github.com/duygunuryldz/Federated_Orthogonal_Training; Bakman et al.,
    ICLR 2024), which is ``main_cifar100.py`` of GPM's (github.com/sahagobinda/GPM;
    Saha et al., ICLR 2021) without the batch norms; ``batch_norm=True`` gives
    GPM's network. For a ``3 x 32 x 32`` input::

        conv1  Conv2d(3, 64, 4)    -> [BN] ReLU Dropout(0.2) MaxPool(2)   29 -> 14
        conv2  Conv2d(64, 128, 3)  -> [BN] ReLU Dropout(0.2) MaxPool(2)   12 -> 6
        conv3  Conv2d(128, 256, 2) -> [BN] ReLU Dropout(0.5) MaxPool(2)    5 -> 2
        fc1    Linear(1024, 2048)  -> [BN] ReLU Dropout(0.5)
        fc2    Linear(2048, 2048)  -> [BN] ReLU Dropout(0.5)
        head   Linear(2048, classes) per task, no bias

    The layer names are the authors' (``conv1`` ... ``fc2``), so FOT's bases
    line up with theirs: :func:`fedcl.subspace.projectable_layers` finds the five
    and excludes the task heads. Batch norms, when on, use batch statistics at
    train and test time (``track_running_stats=False``, as GPM), so there are no
    running buffers to average; FedAvg averages their affine parameters, which
    are never projected.

    Parameters
    ----------
    in_shape : tuple[int, ...]
        ``(channels, height, width)``; the authors' is ``(3, 32, 32)``.
    num_classes : int
        Outputs per head.
    num_heads : int, default 1
        Task-incremental heads (see :class:`~fedcl.models.heads.Heads`).
    batch_norm : bool, default False
        GPM's batch norms after every conv / linear layer (FOT's network has none).
    hidden : int, default 2048
        Width of ``fc1`` and ``fc2``.
    dropout_conv : float, default 0.2
        Dropout after ``conv1`` and ``conv2``.
    dropout_fc : float, default 0.5
        Dropout after ``conv3``, ``fc1`` and ``fc2``.
    head_bias : bool, default False
        Bias in the heads (the authors' have none).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        num_heads: int = 1,
        batch_norm: bool = False,
        hidden: int = 2048,
        dropout_conv: float = 0.2,
        dropout_fc: float = 0.5,
        head_bias: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        size = [h, w]
        for k in (4, 3, 2):
            size = [(s - k + 1) // 2 for s in size]
        if min(size) < 1:
            raise ConfigError("model.name", "alexnet", f"inputs of at least 19 x 19 pixels; got {h} x {w}")
        self.conv1 = nn.Conv2d(c, 64, 4, bias=False)
        self.conv2 = nn.Conv2d(64, 128, 3, bias=False)
        self.conv3 = nn.Conv2d(128, 256, 2, bias=False)
        self.fc1 = nn.Linear(256 * size[0] * size[1], hidden, bias=False)
        self.fc2 = nn.Linear(hidden, hidden, bias=False)

        def bn(n: int, dim: int) -> nn.Module:
            if not batch_norm:
                return nn.Identity()
            cls = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
            return cls(n, track_running_stats=False)

        self.bn1, self.bn2, self.bn3 = bn(64, 2), bn(128, 2), bn(256, 2)
        self.bn4, self.bn5 = bn(hidden, 1), bn(hidden, 1)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(dropout_conv)
        self.drop2 = nn.Dropout(dropout_fc)
        self.head = Heads(hidden, num_classes, num_heads, bias=head_bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.drop1(self.relu(self.bn1(self.conv1(x)))))
        x = self.maxpool(self.drop1(self.relu(self.bn2(self.conv2(x)))))
        x = self.maxpool(self.drop2(self.relu(self.bn3(self.conv3(x)))))
        x = x.flatten(1)
        x = self.drop2(self.relu(self.bn4(self.fc1(x))))
        return self.drop2(self.relu(self.bn5(self.fc2(x))))

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.head(self.features(x), task_id)
