"""Feature clipping, DP sensitivity of the sums, the Gaussian mechanism and SecAgg+ sizing."""

from __future__ import annotations

import math

import pytest
import torch

from fedcl.analytic import statistics
from fedcl.analytic.messages import pack_gram
from fedcl.analytic.privacy import (
    add_gaussian_noise,
    client_sensitivity,
    clip_rows,
    sample_sensitivity,
    secagg_error,
    secagg_ranges,
)
from fedcl.errors import ConfigError

B = 1.7


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_clip_rows_bounds_norms_and_keeps_directions_and_small_rows() -> None:
    # Prepare
    x = torch.randn(200, 30, generator=_gen(), dtype=torch.float64) * torch.linspace(0.01, 3, 200)[:, None]
    # Execute
    out = clip_rows(x, B)
    # Assert
    norms, new = x.norm(dim=1), out.norm(dim=1)
    assert (new <= B * (1 + 1e-15)).all()
    inside = norms <= B
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside], x[inside])  # bit-for-bit
    assert torch.allclose(new[~inside], torch.full_like(new[~inside], B))
    cos = (out * x).sum(1) / (new * norms)
    assert torch.allclose(cos, torch.ones_like(cos))


@pytest.mark.parametrize("bound", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_bound_names_the_key(bound: float) -> None:
    with pytest.raises(ConfigError, match="strategy.feature_bound"):
        clip_rows(torch.ones(2, 2), bound)


def test_sample_sensitivity_bounds_every_neighbour_and_is_attained() -> None:
    # Prepare: a data set of clipped features and many candidate extra samples
    c = 4
    x = clip_rows(torch.randn(50, 12, generator=_gen(1), dtype=torch.float64) * 2, B)
    y = torch.randint(0, c, (50,), generator=_gen(2))
    base = statistics(x, y, c)
    sens = sample_sensitivity(B)
    extra = clip_rows(torch.randn(40, 12, generator=_gen(3), dtype=torch.float64) * 2, B)
    worst_g = worst_c = worst_triu = 0.0
    for i in range(len(extra)):
        # Execute: add one sample
        nb = statistics(torch.cat([x, extra[i: i + 1]]), torch.cat([y, torch.tensor([i % c])]), c)
        dg, dc = nb.gram - base.gram, nb.cross - base.cross
        worst_g, worst_c = max(worst_g, float(dg.norm())), max(worst_c, float(dc.norm()))
        worst_triu = max(worst_triu, float(torch.from_numpy(pack_gram(dg)).norm()))
    # Assert: never above the bound; attained (samples of norm B exist after clipping)
    assert sens.gram == pytest.approx(B**2) and sens.cross == pytest.approx(B)
    assert worst_g <= sens.gram * (1 + 1e-9) and worst_triu <= sens.gram * (1 + 1e-9)
    assert worst_c <= sens.cross * (1 + 1e-9)
    assert worst_g == pytest.approx(sens.gram, rel=1e-9) and worst_c == pytest.approx(sens.cross, rel=1e-9)
    assert sens.joint == pytest.approx(math.hypot(B**2, B))


def test_client_sensitivity_bounds_a_whole_client_and_is_attained() -> None:
    # Prepare: a client of m samples, random and worst case (one vector of norm B repeated, one label)
    m = 25
    sens = client_sensitivity(B, m)
    rand = clip_rows(torch.randn(m, 12, generator=_gen(4), dtype=torch.float64) * 3, B)
    worst = torch.zeros(m, 12, dtype=torch.float64)
    worst[:, 0] = B
    for x, y in ((rand, torch.randint(0, 3, (m,), generator=_gen(5))), (worst, torch.zeros(m, dtype=torch.long))):
        # Execute
        s = statistics(x, y, 3)
        # Assert
        assert float(s.gram.norm()) <= sens.gram * (1 + 1e-12)
        assert float(s.cross.norm()) <= sens.cross * (1 + 1e-12)
    s = statistics(worst, torch.zeros(m, dtype=torch.long), 3)
    assert float(s.gram.norm()) == pytest.approx(m * B**2) and float(s.cross.norm()) == pytest.approx(m * B)
    with pytest.raises(ConfigError, match="strategy.max_samples"):
        client_sensitivity(B, 0)


def test_gaussian_noise_is_symmetric_has_the_stddev_and_is_seeded() -> None:
    # Prepare
    d, c, sigma = 150, 10, 0.7
    gram, cross = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, c, dtype=torch.float64)
    # Execute
    g1, c1 = add_gaussian_noise(gram, cross, sigma, _gen(9))
    g2, c2 = add_gaussian_noise(gram, cross, sigma, _gen(9))
    # Assert
    assert torch.equal(g1, g1.T) and torch.equal(g1, g2) and torch.equal(c1, c2)
    triu = torch.from_numpy(pack_gram(g1))  # 11,325 independent draws
    assert float(triu.std()) == pytest.approx(sigma, rel=0.03)
    assert abs(float(triu.mean())) < 4 * sigma / math.sqrt(len(triu))
    assert float(c1.std()) == pytest.approx(sigma, rel=0.1)
    # the rule of thumb in the docstring: the noise's spectral norm is about 2 sigma sqrt(d)
    assert float(torch.linalg.matrix_norm(g1, 2)) == pytest.approx(2 * sigma * math.sqrt(d), rel=0.1)


def test_secagg_ranges_cover_every_entry_and_are_attained() -> None:
    # Prepare
    n = 40
    ranges = secagg_ranges(B, max_samples=n)
    x = clip_rows(torch.randn(n, 16, generator=_gen(6), dtype=torch.float64) * 5, B)
    s = statistics(x, torch.randint(0, 3, (n,), generator=_gen(7)), 3)
    # Execute / Assert: random data stays inside
    assert float(s.gram.abs().max()) <= ranges["gram"]
    assert float(s.cross.abs().max()) <= ranges["cross"]
    assert float(s.class_counts.max()) <= ranges["counts"]
    # the worst case reaches the bounds: n copies of B e_0, one label
    worst = torch.zeros(n, 16, dtype=torch.float64)
    worst[:, 0] = B
    w = statistics(worst, torch.zeros(n, dtype=torch.long), 3)
    assert float(w.gram.abs().max()) == pytest.approx(ranges["gram"])
    assert float(w.cross.abs().max()) == pytest.approx(ranges["cross"])


def test_secagg_error_and_modulus_limit() -> None:
    # fedcl's defaults: quantization_range 2^22, modulus 2^32
    err = secagg_error(gram_range=100.0, dim=64, num_clients=10, quantization_range=2**22, modulus_range=2**32)
    assert err.entry == pytest.approx(10 * 2 * 100.0 / 2**22)
    assert err.gram_spectral == pytest.approx(64 * err.entry)
    assert err.max_clients == 1023
    with pytest.raises(ConfigError, match="wraps around"):
        secagg_error(100.0, 64, 1024, 2**22, 2**32)
    with pytest.raises(ConfigError, match="modulus_range"):
        secagg_error(100.0, 64, 2, 2**22, 2**22)
