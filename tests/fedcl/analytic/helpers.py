"""Shared set-up of the analytic tests: a small frozen random backbone, a synthetic stream, the ridge oracle."""

from __future__ import annotations

import torch
from torch import nn

from fedcl.analytic import RandomExpansion, backbone_dim, features
from fedcl.config import validate_section
from fedcl.config.schema import Stream as StreamConfig
from fedcl.data import Stream, build_stream
from fedcl.models import MLP
from tests.fedcl.data.configs import stream_raw

GAMMA = 1.0
EXPANSION_DIM = 96
SEED = 0


def synthetic_stream(scenario: str = "class_incremental", num_clients: int = 4, partition: str = "dirichlet",
                     num_tasks: int = 3, seed: int = SEED) -> Stream:
    """6 Gaussian-blob classes of 1x8x8 images, ``num_tasks`` tasks, split over ``num_clients``."""
    cfg = stream_raw(  # the stream YAML's keys, these changed
        "synthetic", scenario=scenario, num_tasks=num_tasks, class_order=None, partition=partition, alpha=0.3,
        shards_per_client=2, min_samples_per_client=1, blurry=None,
        synthetic={"num_classes": 6, "image_shape": [1, 8, 8], "train_per_class": 120, "test_per_class": 60,
                   "noise": 1.5, "seed": 3},
    )
    return build_stream(validate_section(StreamConfig, cfg, "stream"), num_clients, seed)


def frozen_backbone(stream: Stream, seed: int = 11, dropout: float = 0.0) -> MLP:
    """A randomly initialised MLP (never trained): its body is the frozen backbone."""
    torch.manual_seed(seed)
    return MLP(stream.in_shape, stream.num_classes, hidden=[48], dropout=dropout, num_heads=stream.num_heads)


def expansion_for(model: nn.Module, dim: int = EXPANSION_DIM, activation: str = "relu",
                  seed: int = SEED) -> RandomExpansion:
    return RandomExpansion(backbone_dim(model), dim, activation, seed)


def ridge_oracle(x: torch.Tensor, y: torch.Tensor, num_classes: int, gamma: float) -> torch.Tensor:
    """The centralised ridge solution by QR least squares on ``[X; sqrt(gamma) I] W = [Y; 0]``.

    Independent of the code under test: no Gram matrix, no Cholesky.
    """
    x = x.double()
    d = x.shape[1]
    onehot = torch.nn.functional.one_hot(y.long(), num_classes).double()
    a = torch.cat([x, gamma**0.5 * torch.eye(d, dtype=torch.float64)])
    b = torch.cat([onehot, torch.zeros(d, num_classes, dtype=torch.float64)])
    return torch.linalg.lstsq(a, b, driver="gelsd").solution


def union_features(model: nn.Module, exp: RandomExpansion, stream: Stream, pairs: list[tuple[int, int]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of the union of the (task, client) shares in ``pairs``, in one pass."""
    xs, ys = zip(*(stream.client_data(t, c) for t, c in pairs), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    return features(model, exp, x, batch_size=len(x)), y


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))
