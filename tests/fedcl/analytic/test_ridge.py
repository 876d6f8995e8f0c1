"""The ridge solve and the downdates of fedcl.analytic.ridge, on synthetic features."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from fedcl.analytic import Statistics, ridge_inverse, solve_ridge, statistics, woodbury_forget
from fedcl.analytic.ridge import gram_factor
from fedcl.errors import ConfigError, DataError
from tests.fedcl.analytic.helpers import rel_err, ridge_oracle

# Float tolerance of a well-conditioned solve (cond(G + gamma I) < 1e3 below): measured ~1e-15.
RTOL = 1e-11


def _data(n: int = 300, d: int = 20, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def _ill_conditioned(seed: int, n: int = 150, d: int = 30, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``A = X^T X + gamma I`` with singular values of X from 1 to 1e-7: cond(A) ~ 1e13."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, d)))
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = u @ np.diag(np.logspace(0, -7, d)) @ v.T
    y = np.eye(c)[rng.integers(0, c, n)]
    return x.T @ x + 1e-13 * np.eye(d), x.T @ y


def _backward_error(a: np.ndarray, w: np.ndarray, c: np.ndarray) -> float:
    """``|A W - C|_F / (|A|_F |W|_F)`` with the residual in exact rational arithmetic."""
    af = [[Fraction(v) for v in row] for row in a.tolist()]
    wf = [[Fraction(v) for v in row] for row in w.tolist()]
    res = np.array([[float(sum(af[i][k] * wf[k][j] for k in range(a.shape[1])) - Fraction(c[i, j]))
                     for j in range(w.shape[1])] for i in range(a.shape[0])])
    return float(np.linalg.norm(res) / (np.linalg.norm(a) * np.linalg.norm(w)))


def test_solve_matches_an_independent_least_squares_oracle() -> None:
    # Prepare
    x, y = _data()
    # Execute
    w = solve_ridge(statistics(x, y, 5), gamma=0.5)
    # Assert
    assert w.dtype == torch.float64 and w.shape == (20, 5)
    assert rel_err(w, ridge_oracle(x, y, 5, 0.5)) < RTOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cholesky_solve_is_backward_stable_where_an_explicit_inverse_loses_digits(seed: int) -> None:
    """On cond(A) ~ 1e13 the Cholesky solve's backward error stays at float64 rounding (measured
    2.0e-17..4.2e-17); ``inv(A) @ C`` loses ~6 of its 16 digits there (measured 1.2e-11..1.7e-11)."""
    # Prepare
    a, c = _ill_conditioned(seed)
    stats = Statistics(torch.from_numpy(a), torch.from_numpy(c), torch.ones(c.shape[1], dtype=torch.float64))
    assert np.linalg.cond(a) > 1e12
    # Execute
    w_chol = solve_ridge(stats, gamma=0.0).numpy()
    w_inv = np.linalg.inv(a) @ c
    # Assert
    err_chol, err_inv = _backward_error(a, w_chol, c), _backward_error(a, w_inv, c)
    assert err_chol < 1e-15
    assert err_inv > 1e3 * err_chol


def _suggested_gamma(err: pytest.ExceptionInfo[ConfigError]) -> float:
    match = re.search(r"raise strategy\.gamma above ([0-9.eE+-]+)", str(err.value))
    assert match, str(err.value)
    return float(match.group(1))


def test_not_positive_definite_names_gamma_and_a_gamma_that_works() -> None:
    # Prepare: 5 samples in 20 dimensions (rank 5), and a noisy Gram with eigenvalues down to -5
    x, y = _data(n=5)
    low_rank = statistics(x, y, 5)
    big_x, big_y = _data()
    noisy = statistics(big_x, big_y, 5)
    noisy.gram = noisy.gram - 5.0 * torch.eye(20, dtype=torch.float64) - noisy.gram.diagonal().min() * torch.eye(20)
    for stats, gamma in ((low_rank, 0.0), (noisy, 1.0)):
        # Execute
        with pytest.raises(ConfigError, match=r"strategy\.gamma.*positive definite.*raise strategy\.gamma") as err:
            solve_ridge(stats, gamma=gamma)
        # Assert: the gamma the message suggests is enough
        assert solve_ridge(stats, gamma=_suggested_gamma(err)).isfinite().all()


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), float("inf"), True])
def test_bad_gamma_is_a_config_error(gamma: float) -> None:
    x, y = _data()
    with pytest.raises(ConfigError, match="strategy.gamma"):
        solve_ridge(statistics(x, y, 5), gamma=gamma)


def test_gram_factor_reproduces_a_low_rank_gram() -> None:
    # Prepare: 7 samples in 20 dimensions
    x, _ = _data(n=7)
    gram = x.T @ x
    # Execute
    u = gram_factor(gram)
    # Assert
    assert u.shape == (7, 20)
    assert rel_err(u.T @ u, gram) < 1e-13


def test_downdate_equals_retraining_without_the_forgotten_rows() -> None:
    # Prepare
    x, y = _data()
    forget = torch.zeros(len(y), dtype=torch.bool)
    forget[::7] = True
    total = statistics(x, y, 5)
    # Execute
    w = solve_ridge(total - statistics(x[forget], y[forget], 5), gamma=0.5)
    # Assert
    assert rel_err(w, ridge_oracle(x[~forget], y[~forget], 5, 0.5)) < RTOL


def test_woodbury_on_the_inverse_equals_the_downdate() -> None:
    # Prepare: forget 12 samples (rank 12 < d) and then 200 samples (full rank)
    x, y = _data()
    total = statistics(x, y, 5)
    for forget in (slice(0, 12), slice(0, 200)):
        f = statistics(x[forget], y[forget], 5)
        r, w = ridge_inverse(total, 0.5), solve_ridge(total, 0.5)
        # Execute
        r_new, w_new = woodbury_forget(r, w, f, 0.5)
        # Assert
        assert rel_err(w_new, solve_ridge(total - f, 0.5)) < RTOL  # measured 4e-16 / 4e-15
        assert rel_err(r_new, ridge_inverse(total - f, 0.5)) < RTOL


def test_woodbury_with_nothing_to_forget_changes_nothing() -> None:
    x, y = _data()
    total = statistics(x, y, 5)
    r, w = ridge_inverse(total, 0.5), solve_ridge(total, 0.5)
    r_new, w_new = woodbury_forget(r, w, Statistics.zeros(20, 5), 0.5)
    assert torch.equal(r_new, r) and torch.equal(w_new, w)


def test_woodbury_refuses_data_that_was_never_learned() -> None:
    # Prepare: "forget" large statistics that are not part of the sums
    x, y = _data()
    total = statistics(x[:50], y[:50], 5)
    alien = statistics(10.0 * x[50:], y[50:], 5)
    # Execute / Assert
    with pytest.raises(DataError, match="Woodbury"):
        woodbury_forget(ridge_inverse(total, 0.5), solve_ridge(total, 0.5), alien, 0.5)


def test_downdate_refuses_more_samples_than_were_learned() -> None:
    x, y = _data()
    total = statistics(x[:50], y[:50], 5)
    with pytest.raises(DataError, match="cannot forget more samples"):
        _ = total - statistics(x, y, 5)


def test_statistics_reject_mismatched_shapes_and_labels() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="expansion_dim"):
        _ = statistics(x, y, 5) + statistics(x[:, :10], y, 5)
    with pytest.raises(ValueError, match="global classes"):
        statistics(x, y, 3)


def test_gram_is_exactly_symmetric_and_state_dict_round_trips() -> None:
    x, y = _data()
    stats = statistics(x, y, 5) + statistics(2 * x, y, 5)
    assert torch.equal(stats.gram, stats.gram.T)
    back = Statistics.from_state_dict(stats.state_dict())
    assert torch.equal(back.gram, stats.gram) and torch.equal(back.cross, stats.cross)
    assert back.count == 600
