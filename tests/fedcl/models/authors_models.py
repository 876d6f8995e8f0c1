"""Transcriptions of the authors' networks, for the layer-for-layer tests of fedcl's paper models.

Architecture only (no optimiser, no activation bookkeeping), line for line from:
FOT (github.com/duygunuryldz/Federated_Orthogonal_Training, commit f343e36):
``model/alexnet.py``, ``model/resnet.py``, ``model/resnet_imagenet.py``;
GPM (github.com/sahagobinda/GPM, commit 1a238ec): ``main_cifar100.py`` (AlexNet),
``main_five_dataset.py`` (ResNet18). Each forward returns the list of task
outputs, as theirs do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import avg_pool2d, relu


def _out(lin: int, k: int) -> int:
    return (lin - k) + 1  # compute_conv_output_size with stride 1, padding 0


class FotAlexNet(nn.Module):
    """FOT model/alexnet.py (no batch norm); ``bn=True`` is GPM main_cifar100.py."""

    def __init__(self, num_class: int, task_num: int, bn: bool = False) -> None:
        super().__init__()
        self.bn = bn
        self.conv1 = nn.Conv2d(3, 64, 4, bias=False)
        s = _out(32, 4) // 2
        self.conv2 = nn.Conv2d(64, 128, 3, bias=False)
        s = _out(s, 3) // 2
        self.conv3 = nn.Conv2d(128, 256, 2, bias=False)
        s = _out(s, 2) // 2
        self.smid = s
        if bn:
            self.bn1 = nn.BatchNorm2d(64, track_running_stats=False)
            self.bn2 = nn.BatchNorm2d(128, track_running_stats=False)
            self.bn3 = nn.BatchNorm2d(256, track_running_stats=False)
            self.bn4 = nn.BatchNorm1d(2048, track_running_stats=False)
            self.bn5 = nn.BatchNorm1d(2048, track_running_stats=False)
        self.maxpool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.drop1 = nn.Dropout(0.2)
        self.drop2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(256 * self.smid * self.smid, 2048, bias=False)
        self.fc2 = nn.Linear(2048, 2048, bias=False)
        self.last = nn.ModuleList(nn.Linear(2048, num_class, bias=False) for _ in range(task_num))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bsz = x.size(0)
        x = x.view(bsz, 3, 32, 32)
        ident = (lambda t: t)  # noqa: E731
        bn1, bn2, bn3, bn4, bn5 = ((self.bn1, self.bn2, self.bn3, self.bn4, self.bn5) if self.bn
                                   else (ident,) * 5)
        x = self.maxpool(self.drop1(self.relu(bn1(self.conv1(x)))))
        x = self.maxpool(self.drop1(self.relu(bn2(self.conv2(x)))))
        x = self.maxpool(self.drop2(self.relu(bn3(self.conv3(x)))))
        x = x.view(bsz, -1)
        x = self.drop2(self.relu(bn4(self.fc1(x))))
        x = self.drop2(self.relu(bn5(self.fc2(x))))
        return [head(x) for head in self.last]


def _conv3x3(i: int, o: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


class _Block(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, bn: bool) -> None:
        super().__init__()
        self.bn = bn
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.conv2 = _conv3x3(planes, planes)
        if bn:
            self.bn1 = nn.BatchNorm2d(planes, track_running_stats=False)
            self.bn2 = nn.BatchNorm2d(planes, track_running_stats=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            mods: list[nn.Module] = [nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)]
            if bn:
                mods.append(nn.BatchNorm2d(planes, track_running_stats=False))
            self.shortcut = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn:
            out = relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
        else:
            out = relu(self.conv1(x))
            out = self.conv2(out)
        out += self.shortcut(x)
        return relu(out)


class AuthorsResNet18(nn.Module):
    """FOT model/resnet.py (bn=False, stride 1, 32 px, x4 features), GPM main_five_dataset.py (bn=True),
    FOT model/resnet_imagenet.py (bn=True, stem stride 2, 84 px, x9 features)."""

    def __init__(self, taskcla: list[tuple[int, int]], nf: int, bn: bool, stem_stride: int, side: int,
                 pooled: int) -> None:
        super().__init__()
        self.bn, self.side = bn, side
        self.in_planes = nf
        self.conv1 = _conv3x3(3, nf, stem_stride)
        if bn:
            self.bn1 = nn.BatchNorm2d(nf, track_running_stats=False)
        self.layer1 = self._make_layer(nf, 1, bn)
        self.layer2 = self._make_layer(nf * 2, 2, bn)
        self.layer3 = self._make_layer(nf * 4, 2, bn)
        self.layer4 = self._make_layer(nf * 8, 2, bn)
        self.linear = nn.ModuleList(nn.Linear(nf * 8 * pooled, n, bias=False) for _, n in taskcla)

    def _make_layer(self, planes: int, stride: int, bn: bool) -> nn.Sequential:
        layers = []
        for s in (stride, 1):
            layers.append(_Block(self.in_planes, planes, s, bn))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bsz = x.size(0)
        out = self.conv1(x.view(bsz, 3, self.side, self.side))
        out = relu(self.bn1(out) if self.bn else out)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = avg_pool2d(out, 2).view(bsz, -1)
        return [head(out) for head in self.linear]


def fot_resnet18_5datasets() -> AuthorsResNet18:
    """FOT: get_resnet18(5, 10) with nf=20."""
    return AuthorsResNet18([(t, 10) for t in range(5)], nf=20, bn=False, stem_stride=1, side=32, pooled=4)


def gpm_resnet18_5datasets() -> AuthorsResNet18:
    """GPM: ResNet18(taskcla, 20) with five 10-class tasks."""
    return AuthorsResNet18([(t, 10) for t in range(5)], nf=20, bn=True, stem_stride=1, side=32, pooled=4)


def fot_resnet18_miniimagenet() -> AuthorsResNet18:
    """FOT: get_resnet_18(args), nf = 32, twenty 5-class tasks."""
    return AuthorsResNet18([(t, 5) for t in range(20)], nf=32, bn=True, stem_stride=2, side=84, pooled=9)


# FOT's aggregator (FedML/.../fedavg_seq_cont/FedAVGAggregator.py): the layers it projects
FOT_ALEXNET_LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]
FOT_RESNET_LAYERS = [
    "conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.0.conv1",
    "layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv1", "layer2.1.conv2", "layer3.0.conv1", "layer3.0.conv2",
    "layer3.0.shortcut.0", "layer3.1.conv1", "layer3.1.conv2", "layer4.0.conv1", "layer4.0.conv2",
    "layer4.0.shortcut.0", "layer4.1.conv1", "layer4.1.conv2",
]
