"""Shared set-up of the analytic tests: a small frozen random backbone, a synthetic stream, the ridge oracle."""

from __future__ import annotations

from typing import Any

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


# ---- whole runs of strategy=analytic (the real loop and ClientApp, in this process) ----------------------------
ANALYTIC_RUN = ("backend=inprocess", "strategy=analytic", f"strategy.expansion_dim={EXPANSION_DIM}",
                "quiet=true", "output.plots=false", "checkpoint.keep=0", "eval.subset_size=60")


def run_analytic(run_dir: Any, *overrides: str, grid: Any = None) -> dict[str, Any]:
    """A tiny synthetic ``strategy=analytic`` run (checkpoints at every task end); its summary."""
    from pathlib import Path

    from fedcl.config import compose
    from simulations.inprocess import InProcessGrid
    from strategies.server.loop import run_federation
    from tests.conftest import synthetic_overrides

    cfg = compose(synthetic_overrides(*ANALYTIC_RUN, *overrides))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    grid = grid if grid is not None else InProcessGrid(cfg.federation.num_clients, client_threads=1)
    return run_federation(grid, cfg, run_dir)


def checkpoint(run_dir: Any, server_round: int) -> dict[str, Any]:
    """The run's checkpoint after ``server_round`` (global arrays, strategy state)."""
    from pathlib import Path

    blob: dict[str, Any] = torch.load(Path(run_dir) / "checkpoints" / f"round-{server_round}.pt",
                                      map_location="cpu", weights_only=False)
    return blob


def ledger_oracle(arrays: dict[str, torch.Tensor], stream: Stream, ledger: dict[str, list[int]],
                  dropped: list[int] = (), clip: float | None = None, dim: int = EXPANSION_DIM,
                  seed: int = SEED) -> tuple[torch.Tensor, MLP, RandomExpansion]:
    """The centralised ridge solution on the union of the ledger's data, through the run's frozen backbone.

    Independent of the strategy's sums: one pass over all the data (QR least squares).
    """
    model = MLP(stream.in_shape, stream.num_classes, hidden=[32], dropout=0.0, num_heads=stream.num_heads)
    model.body.load_state_dict({k[len("body."):]: v for k, v in arrays.items() if k.startswith("body.")})
    exp = RandomExpansion(backbone_dim(model), dim, "relu", seed)
    pairs = [(t, int(c)) for c, ts in sorted(ledger.items(), key=lambda kv: int(kv[0])) for t in ts]
    x, y = union_features(model, exp, stream, pairs)
    if clip is not None:
        from fedcl.analytic.privacy import clip_rows

        x = clip_rows(x, clip)
    keep = ~torch.isin(y, torch.as_tensor(list(dropped), dtype=y.dtype))
    return ridge_oracle(x[keep], y[keep], stream.num_classes, GAMMA), model, exp


def run_stream(cfg_overrides: tuple[str, ...] | list[str]) -> Stream:
    """The stream a run of ``run_analytic(*cfg_overrides)`` used."""
    from fedcl.config import compose
    from tests.conftest import synthetic_overrides

    cfg = compose(synthetic_overrides(*ANALYTIC_RUN, *cfg_overrides))
    return build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
