"""Privacy arithmetic of the analytic statistics: feature clipping, DP sensitivity, SecAgg+ sizing.

Everything the server needs is the sum of ``(X^T X, X^T Y)``; a bound ``B`` on each sample's
feature norm (:func:`clip_rows`) bounds what one sample (or one client) changes in that sum,
which sizes both the Gaussian noise of central DP (:func:`sample_sensitivity`,
:func:`client_sensitivity`, :func:`add_gaussian_noise`) and the per-payload clipping ranges of
SecAgg+ (:func:`secagg_ranges`, :func:`secagg_error`). The ridge solution is invariant under
rescaling the features by ``1/B`` together with ``gamma -> gamma / B^2``, so ``B`` only sets the
units; what matters is which samples it clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedcl.errors import ConfigError

# Entries of a one-hot label row: its L2 norm is 1, which bounds |x y^T|_F = |x| |y|.
ONE_HOT_NORM = 1.0


def _check_bound(bound: float) -> float:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0:
        raise ConfigError("strategy.feature_bound", bound, "a finite number > 0 (L2 bound on a sample's features)")
    return float(bound)


def clip_rows(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Each row of ``x`` scaled to L2 norm at most ``bound``: ``x_i * min(1, B / |x_i|)``.

    Rows already inside the ball are returned bit-for-bit (the factor is exactly 1).
    """
    b = _check_bound(bound)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    factor = torch.where(norms > b, b / norms.clamp_min(torch.finfo(x.dtype).tiny), torch.ones_like(norms))
    return x * factor


@dataclass(frozen=True)
class Sensitivity:
    """L2 (Frobenius) sensitivities of the released sums under add/remove-one of a unit.

    Parameters
    ----------
    gram : float
        Of ``sum X^T X`` (equally of its upper triangle, which is what needs to travel).
    cross : float
        Of ``sum X^T Y``.
    """

    gram: float
    cross: float

    @property
    def joint(self) -> float:
        """Of the pair released as one vector: ``sqrt(gram^2 + cross^2)`` (one Gaussian mechanism)."""
        return math.hypot(self.gram, self.cross)


def sample_sensitivity(bound: float) -> Sensitivity:
    """Adding or removing one sample ``(x, y)`` with ``|x| <= B`` and one-hot ``y``.

    It changes the sums by ``x x^T`` and ``x y^T``: ``|x x^T|_F = |x|^2 <= B^2`` and
    ``|x y^T|_F = |x| |y| <= B``, both attained by any ``x`` of norm ``B``. The upper
    triangle of ``x x^T`` (including the diagonal) has norm at most ``|x|^2`` too, so sending
    only it (``fedcl.analytic.messages``) and mirroring keeps the same bound.
    """
    b = _check_bound(bound)
    return Sensitivity(gram=b * b, cross=b * ONE_HOT_NORM)


def client_sensitivity(bound: float, max_samples: int) -> Sensitivity:
    """Adding or removing one client holding at most ``max_samples`` samples in the release.

    By the triangle inequality ``m B^2`` and ``m B``, attained when all ``m`` samples share
    one feature vector of norm ``B`` and one label. This is the unit of fedcl's other
    central-DP runs (client-level, McMahan et al., ICLR 2018), at a price ``m`` times the
    sample-level noise: ``max_samples`` must be enforced (a client caps what it sends).
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigError("strategy.max_samples", max_samples, "an integer >= 1 (samples per client and release)")
    one = sample_sensitivity(bound)
    return Sensitivity(gram=max_samples * one.gram, cross=max_samples * one.cross)


def add_gaussian_noise(
    gram: torch.Tensor, cross: torch.Tensor, stddev: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian mechanism on a summed ``(gram, cross)``: ``N(0, stddev^2)`` per released entry.

    ``stddev = noise_multiplier * Sensitivity.joint`` makes it one Gaussian event of that
    noise multiplier for the run's accountant. The Gram noise is drawn on the upper
    triangle (diagonal included) and mirrored, so the noisy Gram stays symmetric and the
    lower triangle is post-processing. Noise can make ``G + gamma I`` indefinite: then
    ``solve_ridge`` names ``strategy.gamma``, which must exceed the noise's spectral norm
    (about ``2 stddev sqrt(d)`` for a d x d symmetric Gaussian matrix).
    """
    if not (math.isfinite(stddev) and stddev >= 0):
        raise ConfigError("privacy.dp.noise_multiplier", stddev, "a finite noise level >= 0")
    d = gram.shape[0]
    noise = torch.randn(d, d, dtype=torch.float64, generator=generator).triu()
    noise = noise + noise.triu(1).T
    cross_noise = torch.randn(cross.shape, dtype=torch.float64, generator=generator)
    return gram.double() + stddev * noise.to(gram.device), cross.double() + stddev * cross_noise.to(cross.device)


def secagg_ranges(bound: float, max_samples: int) -> dict[str, float]:
    """Per-client, per-entry bounds of the statistics: what ``privacy.secagg.ranges`` must cover.

    Flower's SecAgg+ clips each client's entry to ``[-range, range]`` before quantising;
    a range below these bounds biases the sum silently (fedcl counts clipped clients).
    With ``n <= max_samples`` samples of norm ``<= B``: ``|G_ab| <= sum_s |x_sa| |x_sb| <= n B^2``
    (diagonal attains it), ``|C_ak| <= sum_s |x_sa| <= n B`` (one-hot labels) and each class
    count ``<= n``.
    """
    b = _check_bound(bound)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigError("privacy.secagg.max_weight", max_samples,
                          "an integer >= 1 (the most samples one client sends in one statistics reply)")
    return {"gram": max_samples * b * b, "cross": max_samples * b, "counts": float(max_samples)}


@dataclass(frozen=True)
class SecAggError:
    """Worst-case error that SecAgg+'s quantisation adds to a sum over ``num_clients`` clients.

    Parameters
    ----------
    entry : float
        Per entry of the summed Gram: ``num_clients`` stochastic roundings of at most one
        level, ``2 range / quantization_range``, each.
    gram_spectral : float
        Spectral norm bound of the Gram's error (``d * entry``, via the Frobenius norm):
        ``strategy.gamma`` above it keeps ``G + gamma I`` positive definite.
    max_clients : int
        The most clients whose quantised sum fits the modulus without wrapping: each
        client's entry is an integer in ``[0, quantization_range]``, so
        ``(modulus_range - 1) // quantization_range``.
    """

    entry: float
    gram_spectral: float
    max_clients: int


def secagg_error(
    gram_range: float, dim: int, num_clients: int, quantization_range: int, modulus_range: int
) -> SecAggError:
    """:class:`SecAggError` of the Gram sum for a range, width ``d_e`` and clients per round."""
    if quantization_range < 1 or modulus_range <= quantization_range:
        raise ConfigError("privacy.secagg.modulus_range", modulus_range,
                          f"an integer above privacy.secagg.quantization_range={quantization_range}")
    entry = num_clients * 2.0 * gram_range / quantization_range
    max_clients = (modulus_range - 1) // quantization_range
    if num_clients > max_clients:
        raise ConfigError("privacy.secagg.quantization_range", quantization_range,
                          f"at most (modulus_range - 1) / {num_clients}: a sum of {num_clients} quantised "
                          f"vectors wraps around modulus {modulus_range}")
    return SecAggError(entry=entry, gram_spectral=dim * entry, max_clients=max_clients)
