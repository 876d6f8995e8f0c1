"""DP-GPSE: FOT's GPSE sums under client-level central DP (bounded per client, Gaussian noise on the sum).

A client's sketch ``Y_i = R_i Omega_i`` spans its residual layer inputs, so without noise the
summed sketch is a membership test for the clients' own samples. Here each client bounds what it
contributes and the server adds the Gaussian mechanism (Dwork & Roth 2014) to the sums, one
release per task in the run's accountant (:meth:`strategies.privacy.PrivateAveraging.release_gpse`):

* client (:func:`bound_inputs`, :func:`clip_sketch`): the layer inputs ``A_i`` (one column per
  sample, or per patch) are divided by their median column norm and each column is clipped to
  norm 1 (if a sample has several columns, ``A_i`` is scaled so ``||A_i||_F <= sqrt(n_i)``); the
  sketch is then clipped to Frobenius norm ``S = sqrt(n_max p)`` (``n_max`` =
  ``strategy.gpse_max_samples``, ``p`` its columns). Only this last clip matters for the
  guarantee; the others keep it from binding. ``0 <= r_i <= 1`` and ``n_i <= n_max``;
* server (:func:`add_gpse_noise`): one client changes the normalised vector
  ``(Y_l / S_l, n_i r_il / n_max, n_i / n_max)`` (L layers) by at most ``sqrt(2 L + 1)``, the
  sensitivity the noise ``N(0, (z sqrt(2L+1))^2)`` per normalised entry is calibrated to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fedcl.config import Config


@dataclass
class GpseSums:
    """What the server makes FOT's bases from: ``sum_i Y_i`` per layer, ``sum_i n_i r_i`` per layer, ``sum_i n_i``."""

    sketches: dict[str, np.ndarray]
    ratios: dict[str, float]
    total: float


def private_gpse(cfg: Config) -> bool:
    """Whether this run's GPSE replies are bounded and their sums noised (client-level central DP)."""
    dp = cfg.privacy.dp
    return dp is not None and dp.mode == "central"


def bound_inputs(A: torch.Tensor, n: int) -> torch.Tensor:
    """``A`` (``d x columns``): columns scaled by their median norm, clipped to norm 1, ``||A||_F <= sqrt(n)``."""
    norms = torch.linalg.vector_norm(A, dim=0)
    scale = float(norms.median()) if norms.numel() else 0.0
    if scale <= 0.0:
        scale = float(norms.max()) if norms.numel() and float(norms.max()) > 0 else 1.0
    norms = norms / scale
    factor = torch.where(norms > 1.0, 1.0 / norms.clamp_min(1e-30), torch.ones_like(norms)) / scale
    out = A * factor
    if A.shape[1] > n > 0:  # several columns per sample (conv patches): the whole client weighs like n samples
        out = out * math.sqrt(n / A.shape[1])
    return out


def sketch_bound(max_samples: int, columns: int) -> float:
    """``S = sqrt(n_max p)``: ``||R_i Omega_i||_F`` is about ``sqrt(p) ||R_i||_F <= sqrt(p n_max)``."""
    return math.sqrt(float(max_samples) * float(columns))


def clip_sketch(Y: torch.Tensor, bound: float) -> torch.Tensor:
    """``Y`` scaled to Frobenius norm at most ``bound`` (the DP bound of one client's sketch)."""
    norm = float(torch.linalg.norm(Y))
    return Y * (bound / norm) if norm > bound else Y


def gpse_sensitivity(layers: int) -> float:
    """L2 sensitivity of the normalised GPSE vector when one client is added or removed."""
    return math.sqrt(2 * layers + 1)


def add_gpse_noise(sums: GpseSums, noise_multiplier: float, max_samples: int, rng: np.random.Generator) -> GpseSums:
    """The Gaussian mechanism on the summed sketches and statistics (one release of multiplier ``noise_multiplier``).

    Layers in sorted order, so the noise is a function of the seed only. The noised count is
    kept >= 1 and each ratio sum in [0, count] (post-processing).
    """
    std = noise_multiplier * gpse_sensitivity(len(sums.sketches))
    sketches = {}
    for name in sorted(sums.sketches):
        y = np.asarray(sums.sketches[name], dtype=np.float64)
        s = sketch_bound(max_samples, y.shape[1])
        sketches[name] = (y + rng.normal(0.0, std * s, size=y.shape)).astype(np.float32)
    total = max(1.0, sums.total + float(rng.normal(0.0, std * max_samples)))
    ratios = {name: min(max(0.0, v + float(rng.normal(0.0, std * max_samples))), total)
              for name, v in sorted(sums.ratios.items())}
    return GpseSums(sketches, ratios, total)
