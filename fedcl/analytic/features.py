"""Features of the analytic learner: a frozen backbone, then a seeded random expansion layer.

``X = act(backbone(x) @ W_e)`` with ``W_e`` ``[d_b, d_e]`` drawn from the run seed alone, so
every client and the server build the same layer without it ever travelling. The random
buffer layer follows ACIL (Zhuang et al., "ACIL: Analytic Class-Incremental Learning with
Absolute Memorization and Privacy Protection", NeurIPS 2022); its entries here are
``N(0, 1/d_b)`` so that features stay O(|h|) whatever the widths.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcl.analytic.privacy import clip_rows
from fedcl.analytic.ridge import Statistics, statistics
from fedcl.errors import ConfigError, DataError
from fedcl.seeding import derive_seed

ACTIVATIONS = ("relu", "tanh", "none")
EXPANSION_TAG = "analytic-expansion"  # seed tag: (run seed, tag, d_b, d_e) -> W_e


class RandomExpansion(nn.Module):
    """The random expansion (buffer) layer ``h -> act(h @ W_e)``, computed in float64.

    Parameters
    ----------
    in_features : int
        Backbone output width ``d_b``.
    expansion_dim : int
        ``d_e`` (``strategy.expansion_dim``): width of the features; the statistics are ``d_e x d_e``.
    activation : str
        ``relu``, ``tanh`` or ``none`` (``strategy.activation``).
    seed : int
        The run seed; ``W_e`` is a function of (seed, ``d_b``, ``d_e``) only.
    """

    def __init__(self, in_features: int, expansion_dim: int, activation: str, seed: int) -> None:
        super().__init__()
        if isinstance(expansion_dim, bool) or not isinstance(expansion_dim, int) or expansion_dim < 1:
            raise ConfigError("strategy.expansion_dim", expansion_dim, "an integer >= 1 (features per sample)")
        if activation not in ACTIVATIONS:
            raise ConfigError("strategy.activation", activation, f"one of {list(ACTIVATIONS)}")
        self.in_features, self.expansion_dim, self.activation = int(in_features), expansion_dim, activation
        # NumPy's PCG64 stream, not torch's: the same W_e on every device, process and torch version
        rng = np.random.default_rng(derive_seed(seed, EXPANSION_TAG, in_features, expansion_dim))
        w = rng.standard_normal((in_features, expansion_dim)) / np.sqrt(in_features)
        self.weight: torch.Tensor
        self.register_buffer("weight", torch.from_numpy(w))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = h.to(torch.float64) @ self.weight
        if self.activation == "relu":
            return torch.relu(z)
        if self.activation == "tanh":
            return torch.tanh(z)
        return z


def backbone_of(model: nn.Module) -> nn.Module:
    """The model's feature extractor (``model.body``, as in every model of ``fedcl.models``)."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise ConfigError("model.name", type(model).__name__,
                          "a model with a `body` feature extractor and a `head` (fedcl.models: mlp, convnet)")
    return body


def backbone_dim(model: nn.Module) -> int:
    """Width of the backbone's output (the input width of the model's head)."""
    head = getattr(model, "head", None)
    if isinstance(getattr(head, "expansion", None), RandomExpansion):
        return int(head.expansion.in_features)  # type: ignore[union-attr]
    heads = getattr(head, "heads", None)
    if isinstance(heads, nn.ModuleList) and len(heads) and isinstance(heads[0], nn.Linear):
        return int(heads[0].in_features)
    raise ConfigError("model.name", type(model).__name__, "a model whose head is fedcl.models.Heads")


def _backbone_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The backbone in ``dtype`` and eval mode (dropout off), as a copy: the model is not touched."""
    body = copy.deepcopy(backbone_of(model)).to(dtype)
    body.eval()
    return body


@torch.no_grad()
def _features(body: nn.Module, expansion: RandomExpansion, x: torch.Tensor, batch_size: int,
              clip_bound: float | None) -> torch.Tensor:
    param = next(body.parameters())
    expansion = expansion.to(param.device)
    out = []
    for start in range(0, x.shape[0], batch_size):
        feats = expansion(body(x[start: start + batch_size].to(param.device, param.dtype)))
        out.append(clip_rows(feats, clip_bound) if clip_bound is not None else feats)
    if not out:
        return torch.zeros(0, expansion.expansion_dim, dtype=torch.float64, device=param.device)
    return torch.cat(out)


def features(
    model: nn.Module, expansion: RandomExpansion, x: torch.Tensor, batch_size: int = 1024,
    clip_bound: float | None = None, dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``act(backbone(x) @ W_e)`` for all of ``x``: float64 ``[n, d_e]`` on the model's device.

    The backbone runs as an eval-mode copy (dropout off: the features are a function of
    the frozen weights alone) in ``dtype``. float64 by default because a float32 forward
    pass rounds a sample differently depending on the batch it sits in (measured on this
    CPU: 1e-8 relative), which is exactly the kind of difference between clients' batches
    and a centralised pass that exactness forbids. With ``clip_bound`` each sample's
    feature vector is clipped to that L2 norm (:func:`fedcl.analytic.privacy.clip_rows`).
    """
    return _features(_backbone_copy(model, dtype), expansion, x, batch_size, clip_bound)


@torch.no_grad()
def client_statistics(
    model: nn.Module, expansion: RandomExpansion, x: torch.Tensor, y: torch.Tensor, num_classes: int,
    batch_size: int = 1024, clip_bound: float | None = None, dtype: torch.dtype = torch.float64,
) -> Statistics:
    """A client's :class:`Statistics` of ``(x, y)`` through the frozen backbone and the expansion.

    Accumulated batch by batch (memory ``O(batch * d_e + d_e^2)``, not ``O(n * d_e)``) and
    returned on the CPU, ready for a message. ``dtype`` as in :func:`features`.
    """
    body = _backbone_copy(model, dtype)
    total = Statistics.zeros(expansion.expansion_dim, num_classes, device=next(body.parameters()).device)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start: start + batch_size], y[start: start + batch_size]
        total = total + statistics(_features(body, expansion, xb, batch_size, clip_bound), yb, num_classes)
    return total.to("cpu")


def load_backbone(model: nn.Module, path: str | Path) -> None:
    """Load the backbone weights of ``strategy.backbone`` into ``model.body`` (the head is ignored).

    ``path`` is a run's ``final.pt`` or ``checkpoints/round-<r>.pt`` (a dict with
    ``arrays``) or a plain ``state_dict`` of the same model config. Like ``resume``, it
    unpickles the whole file (checkpoints hold NumPy RNG states, which torch's
    ``weights_only`` loader refuses): name only files you trust.

    Raises
    ------
    DataError
        The file is missing or unreadable, or it lacks a backbone weight of this model
        or has one of another shape (a different ``model`` config).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"strategy.backbone={str(path)!r}: no such file (a run's final.pt or a checkpoint)")
    try:
        blob: Any = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise DataError(f"strategy.backbone={str(path)!r}: not a readable torch file ({exc})") from exc
    state = blob.get("arrays", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise DataError(f"strategy.backbone={str(path)!r}: expected a state_dict or a dict with 'arrays'")
    body = backbone_of(model)
    own = body.state_dict()
    loaded = {}
    for name, ref in own.items():
        src = state.get(f"body.{name}")
        if not isinstance(src, torch.Tensor) or tuple(src.shape) != tuple(ref.shape):
            got = "missing" if not isinstance(src, torch.Tensor) else f"shape {tuple(src.shape)}"
            raise DataError(f"strategy.backbone={str(path)!r}: body.{name} is {got}, this model needs "
                            f"{tuple(ref.shape)}: load a backbone trained with the same `model` config")
        loaded[name] = torch.as_tensor(src).to(ref.dtype)
    body.load_state_dict(loaded)
