"""Ridge statistics, their sums, the Cholesky solve and the two unlearning downdates (float64).

The whole learner is ``W = (sum X^T X + gamma I)^-1 sum X^T Y``. Everything a client sends is
a :class:`Statistics` and everything the server keeps is their sum (one more
:class:`Statistics`), so adding a client, a task or a reply order changes nothing but float64
rounding, and unlearning is a subtraction. Two downdates are offered and tested to agree:

* :meth:`Statistics.__sub__` then :func:`solve_ridge`: the reference path, re-solved from
  the sums by Cholesky (the server keeps the sums);
* :func:`woodbury_forget`: ACU's form (Tang et al., "Analytic Continual Unlearning for
  Efficient and Exact Forgetting with Privacy Preservation") on the solved inverse
  ``R = (G + gamma I)^-1``, for a server that keeps ``(R, W)`` instead of the sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedcl.errors import ConfigError, DataError

# Class counts are integers held in float64; after a downdate anything below -COUNT_SLACK means
# more samples were forgotten than were ever added.
COUNT_SLACK = 0.5


@dataclass
class Statistics:
    """Sufficient statistics of a ridge regression on features ``X`` and one-hot labels ``Y``.

    Parameters
    ----------
    gram : torch.Tensor
        ``X^T X``, float64 ``[d, d]``, symmetric.
    cross : torch.Tensor
        ``X^T Y``, float64 ``[d, C]`` (``C``: the stream's global classes).
    class_counts : torch.Tensor
        ``Y^T 1``, float64 ``[C]``: samples per class (integers).
    """

    gram: torch.Tensor
    cross: torch.Tensor
    class_counts: torch.Tensor

    @classmethod
    def zeros(cls, dim: int, num_classes: int, device: torch.device | str = "cpu") -> Statistics:
        """Empty sums: the server's state before any reply."""
        f64 = torch.float64
        return cls(torch.zeros(dim, dim, dtype=f64, device=device),
                   torch.zeros(dim, num_classes, dtype=f64, device=device),
                   torch.zeros(num_classes, dtype=f64, device=device))

    @property
    def dim(self) -> int:
        return int(self.gram.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.cross.shape[1])

    @property
    def count(self) -> int:
        """Samples in these statistics."""
        return round(float(self.class_counts.sum()))

    def _check_like(self, other: Statistics) -> None:
        if (other.gram.shape, other.cross.shape) != (self.gram.shape, self.cross.shape):
            raise ValueError(f"statistics of shapes {tuple(other.gram.shape)}/{tuple(other.cross.shape)} cannot be "
                             f"combined with {tuple(self.gram.shape)}/{tuple(self.cross.shape)}: same "
                             "strategy.expansion_dim and class count on every client")

    def __add__(self, other: Statistics) -> Statistics:
        self._check_like(other)
        return Statistics(self.gram + other.gram, self.cross + other.cross, self.class_counts + other.class_counts)

    def __sub__(self, other: Statistics) -> Statistics:
        """The downdate: these sums without ``other``'s samples (which they must contain)."""
        self._check_like(other)
        counts = self.class_counts - other.class_counts
        if bool((counts < -COUNT_SLACK).any()):
            bad = torch.nonzero(counts < -COUNT_SLACK).flatten().tolist()
            raise DataError(f"cannot forget more samples of classes {bad} than the sums hold: the forget "
                            "statistics are not part of what was learned (wrong client, task or class?)")
        return Statistics(self.gram - other.gram, self.cross - other.cross, counts)

    def to(self, device: torch.device | str) -> Statistics:
        return Statistics(self.gram.to(device), self.cross.to(device), self.class_counts.to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """For checkpoints (CPU tensors)."""
        return {"gram": self.gram.cpu(), "cross": self.cross.cpu(), "class_counts": self.class_counts.cpu()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Statistics:
        return cls(state["gram"].double(), state["cross"].double(), state["class_counts"].double())


def statistics(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Statistics:
    """:class:`Statistics` of features ``x`` ``[n, d]`` and integer labels ``y`` ``[n]`` (global classes).

    The Gram matrix is symmetrised so that sums of statistics stay exactly symmetric (a
    BLAS product may round ``(a, b)`` and ``(b, a)`` differently).
    """
    x = x.to(torch.float64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features [n, d] and labels [n] expected, got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (global classes), got [{int(y.min())}, "
                         f"{int(y.max())}]")
    onehot = torch.nn.functional.one_hot(y.long().to(x.device), num_classes).to(torch.float64)
    gram = x.T @ x
    return Statistics(0.5 * (gram + gram.T), x.T @ onehot, onehot.sum(0))


def _check_gamma(gamma: float) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ConfigError("strategy.gamma", gamma, "a finite number >= 0 (the ridge regulariser)")


def _round_up(value: float) -> float:
    """``value`` rounded up to three significant digits (a suggestion must not fall short)."""
    step = 10.0 ** (math.floor(math.log10(value)) - 2)
    return math.ceil(value / step) * step


def _regularised_factor(gram: torch.Tensor, gamma: float) -> torch.Tensor:
    """Lower Cholesky factor of ``gram + gamma I``, or an error naming ``strategy.gamma``."""
    _check_gamma(gamma)
    if not bool(torch.isfinite(gram).all()):
        raise ValueError("sum X^T X has non-finite entries: a client sent NaN/inf statistics")
    a = gram.double() + gamma * torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        lowest = float(torch.linalg.eigvalsh(a)[0])
        needed = _round_up(gamma + max(-lowest, 0.0) + 1e-8 * max(float(a.diagonal().abs().max()), 1.0))
        raise ConfigError(
            "strategy.gamma", gamma,
            f"large enough that sum X^T X + gamma I is positive definite: its Cholesky factorisation failed at "
            f"pivot {int(info)} (smallest eigenvalue {lowest:.3g}); raise strategy.gamma above {needed:.3g} "
            "(DP noise or SecAgg+ quantisation on the sums need a gamma above their spectral error)",
        )
    return factor


def solve_ridge(stats: Statistics, gamma: float) -> torch.Tensor:
    """``W = (G + gamma I)^-1 C`` by Cholesky in float64: ``[d, C]``.

    Never forms the inverse: a Cholesky solve is backward stable (its residual is at the
    level of float64 rounding), while ``inv(A) @ C`` loses about ``log10(cond(A))`` digits
    of it (``tests/fedcl/analytic/test_ridge.py`` shows both on an ill-conditioned Gram).

    Raises
    ------
    ConfigError
        ``strategy.gamma`` is negative or not finite, or ``G + gamma I`` is not positive definite.
    """
    return torch.cholesky_solve(stats.cross.double(), _regularised_factor(stats.gram, gamma))


def ridge_inverse(stats: Statistics, gamma: float) -> torch.Tensor:
    """``R = (G + gamma I)^-1`` from its Cholesky factor, for :func:`woodbury_forget` (ACU's state)."""
    return torch.cholesky_inverse(_regularised_factor(stats.gram, gamma))


def gram_factor(gram: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """A matrix ``U`` ``[r, d]`` with ``U^T U = gram`` (symmetric PSD), ``r`` = its numerical rank.

    From the eigendecomposition; eigenvalues below ``rtol * max`` (default ``d * eps``)
    are rounding noise of a low-rank Gram and dropped.
    """
    vals, vecs = torch.linalg.eigh(gram.double())
    tol = (rtol if rtol is not None else gram.shape[0] * torch.finfo(torch.float64).eps) * float(vals.abs().max())
    keep = vals > tol
    return (vecs[:, keep] * vals[keep].sqrt()).T


def woodbury_forget(
    inverse: torch.Tensor, weight: torch.Tensor, forget: Statistics, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """ACU's closed-form unlearning on the solved inverse: ``(R, W) -> (R', W')`` without ``forget``.

    With ``A = G + gamma I``, ``R = A^-1``, ``W = R C`` and the forgotten statistics
    ``(G_f, C_f)``, factor ``G_f = U^T U`` (:func:`gram_factor`); then by Woodbury
    ``R' = (A - U^T U)^-1 = R + R U^T (I - U R U^T)^-1 U R`` and
    ``W' = R' (C - C_f) = W + R' (G_f W - C_f)``. ACU applies the same identity with the
    forgotten features ``X_f`` as ``U``; any factor of ``G_f`` gives the same ``R'``, so the
    holders send sums only (SecAgg+ applies) and raw features never leave a client.

    Parameters
    ----------
    inverse : torch.Tensor
        ``R`` ``[d, d]`` (:func:`ridge_inverse`).
    weight : torch.Tensor
        ``W`` ``[d, C]`` solved with the same sums.
    forget : Statistics
        Sum of the forgotten data's statistics (contained in the sums behind ``R``).
    gamma : float
        The ridge regulariser (named in the error).

    Raises
    ------
    DataError
        ``I - U R U^T`` is not positive definite: the forgotten data was not in the sums
        (or rounding ate the margin; then raise ``strategy.gamma``).
    """
    r = inverse.double()
    u = gram_factor(forget.gram)
    if u.shape[0] == 0:
        return r.clone(), weight.double().clone()
    ru = r @ u.T  # [d, k]
    inner = torch.eye(u.shape[0], dtype=torch.float64, device=r.device) - u @ ru
    factor, info = torch.linalg.cholesky_ex(0.5 * (inner + inner.T))
    if int(info) != 0:
        raise DataError("Woodbury downdate: I - U R U^T is not positive definite, so the forgotten statistics are "
                        "not part of the sums behind R (wrong client, task or class?); if they are, rounding ate "
                        f"the margin: raise strategy.gamma (now {gamma}) or use the downdate of the sums")
    r_new = r + ru @ torch.cholesky_solve(ru.T, factor)
    r_new = 0.5 * (r_new + r_new.T)
    w_new = weight.double() + r_new @ (forget.gram.double() @ weight.double() - forget.cross.double())
    return r_new, w_new
