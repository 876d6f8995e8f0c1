"""The reduced ResNet-18 of GPM and FOT for 5-Datasets and mini-ImageNet (``model=resnet18_reduced``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.errors import ConfigError
from fedcl.models.heads import Heads


def _bn(channels: int, on: bool) -> nn.Module:
    # batch statistics at train and test time, as GPM and FOT: no running buffers to average
    return nn.BatchNorm2d(channels, track_running_stats=False) if on else nn.Identity()


class BasicBlock(nn.Module):
    """Two bias-free 3 x 3 convs with a residual; a bias-free 1 x 1 conv shortcut where the shape changes.

    Parameters
    ----------
    in_planes : int
        Input channels.
    planes : int
        Output channels.
    stride : int, default 1
        Stride of the first conv and of the shortcut.
    batch_norm : bool, default False
        Batch norm after each conv (GPM; FOT's mini-ImageNet network).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes, batch_norm)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(planes, batch_norm)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # index 0 is the conv: the authors' key 'layerX.0.shortcut.0.weight'
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))
            if batch_norm:
                self.shortcut.append(nn.BatchNorm2d(planes, track_running_stats=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out)


class ResNet18Reduced(nn.Module):
    """ResNet-18 with ``nf`` base filters (4 stages of 2 basic blocks), average-pooled, then the task heads.

    Reference: layer for layer as FOT's official code
    (github.com/duygunuryldz/Federated_Orthogonal_Training; Bakman et al.,
    ICLR 2024): ``model/resnet.py`` for 5-Datasets (``nf=20``, stem stride 1, no
    batch norm, ``3 x 32 x 32`` inputs) and ``model/resnet_imagenet.py`` for
    mini-ImageNet (``nf=32``, stem stride 2, batch norm, ``3 x 84 x 84``). GPM's
    ``main_five_dataset.py`` (github.com/sahagobinda/GPM; Saha et al., ICLR 2021)
    is the 5-Datasets network with batch norm (``batch_norm=True``). Layout::

        conv1   Conv2d(3, nf, 3, stride=stem_stride, padding=1)  [BN] ReLU
        layer1  2 blocks, nf channels,   stride 1
        layer2  2 blocks, 2 nf channels, stride 2 (1 x 1 conv shortcut)
        layer3  2 blocks, 4 nf channels, stride 2 (1 x 1 conv shortcut)
        layer4  2 blocks, 8 nf channels, stride 2 (1 x 1 conv shortcut)
        avg_pool2d(2), flatten          32 x 32 -> 2 x 2;  84 x 84 (stride 2) -> 3 x 3
        head    Linear(8 nf * pooled pixels, classes) per task, no bias

    Module names are the authors' (``conv1``, ``layer2.0.shortcut.0`` ...), and
    the 20 convs are exactly the layers their FOT aggregator projects; FOT's
    GPSE unfolds each with its own stride and padding (:mod:`fedcl.subspace`).

    BatchNorm, when on, is what both papers use: ``track_running_stats=False``
    (batch statistics at train and test time, so no client-specific running
    buffers exist), affine parameters trained by every client on every task and
    averaged by FedAvg, never projected (FOT's aggregator projects only conv
    weights). GPM instead freezes them after the first task (it zeroes every 1-D
    parameter's gradient in ``train_projected``); fedcl does not do that.

    Parameters
    ----------
    in_shape : tuple[int, ...]
        ``(channels, height, width)``.
    num_classes : int
        Outputs per head.
    num_heads : int, default 1
        Task-incremental heads.
    nf : int, default 20
        Base filters (GPM and FOT's 5-Datasets: 20; FOT's mini-ImageNet: 32).
    stem_stride : int, default 1
        Stride of the first conv (2 for 84 x 84 mini-ImageNet).
    batch_norm : bool, default False
        Batch norm after every conv.
    head_bias : bool, default False
        Bias in the heads (the authors' have none).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        num_heads: int = 1,
        nf: int = 20,
        stem_stride: int = 1,
        batch_norm: bool = False,
        head_bias: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.conv1 = nn.Conv2d(c, nf, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = _bn(nf, batch_norm)
        size = [(s - 1) // stem_stride + 1 for s in (h, w)]
        layers = []
        in_planes = nf
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            planes = nf * mult
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride, batch_norm),
                                        BasicBlock(planes, planes, 1, batch_norm)))
            in_planes = planes
            size = [(s - 1) // stride + 1 for s in size]
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        pooled = [s // 2 for s in size]
        if min(pooled) < 1:
            raise ConfigError("model.name", "resnet18_reduced",
                              f"larger inputs: {h} x {w} leaves {size[0]} x {size[1]} pixels before the 2 x 2 pooling")
        self.head = Heads(8 * nf * pooled[0] * pooled[1], num_classes, num_heads, bias=head_bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.avg_pool2d(out, 2).flatten(1)

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.head(self.features(x), task_id)
