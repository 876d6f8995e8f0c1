"""DP-GPSE: each client's GPSE contribution bounded, the summed sketches noised and accounted (issue 17, item 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedcl.fot.client import gpse_statistics
from fedcl.models import MLP
from fedcl.privacy.gpse import GpseSums, add_gpse_noise, bound_inputs, clip_sketch, gpse_sensitivity, sketch_bound
from strategies.fot import FOT
from tests.strategies.helpers import make_strategy
from tests.strategies.test_fot import D_IN, D_OUT, GPSEGrid, arrays_of


def test_bound_inputs_clips_columns_and_the_whole_client() -> None:
    # Prepare: 10 samples, one of them 1,000x the others (an outlier that would dominate the sketch)
    A = torch.randn(6, 10)
    A[:, 3] *= 1000.0
    # Execute
    out = bound_inputs(A, 10)
    # Assert: every column has norm <= 1, so ||A||_F <= sqrt(n)
    assert float(torch.linalg.vector_norm(out, dim=0).max()) <= 1.0 + 1e-6
    assert float(torch.linalg.norm(out)) <= math.sqrt(10) + 1e-5


def test_private_client_sketch_is_clipped_to_its_bound() -> None:
    # Prepare: inputs of huge scale: without DP the sketch's norm grows with them
    torch.manual_seed(0)
    model = MLP((10,), 4, hidden=[8])
    x = 1e4 * torch.randn(40, 10)
    gen = torch.Generator
    # Execute
    plain, _ = gpse_statistics(model, x, {}, max_samples=30, generator=gen().manual_seed(1))
    private, stats = gpse_statistics(model, x, {}, max_samples=30, generator=gen().manual_seed(1), private=True)
    # Assert: each private sketch within S = sqrt(n_max p); the plain one far above it; ratios in [0, n]
    for name, Y in private.items():
        bound = sketch_bound(30, Y.shape[1])
        assert np.linalg.norm(Y) <= bound * (1 + 1e-5) < np.linalg.norm(plain[name])
        assert 0.0 <= stats[f"{name}/ratio-weighted"] <= 30.0 + 1e-4


def test_clip_sketch_scales_only_above_the_bound() -> None:
    Y = torch.ones(4, 4)  # norm 4
    assert float(torch.linalg.norm(clip_sketch(Y, 2.0))) == pytest.approx(2.0)
    assert torch.equal(clip_sketch(Y, 10.0), Y)


def test_gpse_noise_is_calibrated_to_the_normalised_sensitivity() -> None:
    # Prepare: two layers (sensitivity sqrt(5)), n_max = 50, zero sums
    sums = GpseSums({"a": np.zeros((20, 200)), "b": np.zeros((10, 100))}, {"a": 0.0, "b": 0.0}, 0.0)
    # Execute
    noised = add_gpse_noise(sums, 0.5, 50, np.random.default_rng(0))
    # Assert: std z sqrt(2L+1) S_l on each layer's sketch; count kept >= 1, ratios in [0, count]
    for y in noised.sketches.values():
        expected = 0.5 * gpse_sensitivity(2) * sketch_bound(50, y.shape[1])
        assert float(np.std(y)) == pytest.approx(expected, rel=0.05)
    assert noised.total >= 1.0 and all(0.0 <= r <= noised.total for r in noised.ratios.values())


def test_fot_under_central_dp_noises_and_accounts_its_sketches(message_identity: None) -> None:
    # Prepare: the same GPSE replies to a private and a non-private FOT
    private = make_strategy("strategy=fot", "privacy=dp_central", "privacy.dp.gpse_noise_multiplier=2.0")
    plain = make_strategy("strategy=fot")
    assert isinstance(private, FOT) and isinstance(plain, FOT)
    basis = np.eye(D_IN)[:, :2]
    w0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))
    # Execute: end of task 0
    private.on_task_end(2, 0, w0, GPSEGrid(basis))
    plain.on_task_end(2, 0, w0, GPSEGrid(basis))
    # Assert: one 'gpse' release at the configured multiplier, epsilon > 0, in summary.json's ledger
    [release] = private.averager.accountant.ledger
    assert (release.kind, release.noise_multiplier, release.sample_size) == ("gpse", 2.0, 3)
    assert private.averager.epsilon > 0
    assert private.averager.summary()["privacy"]["releases_by_kind"] == {"gpse": 1}
    # the noise dwarfs these sketches: the private basis is not the clients' exact span
    U, V = private.fot.bases.get("fc"), plain.fot.bases["fc"]
    assert U is None or U.shape != V.shape or not np.allclose((U @ U.T).numpy(), (V @ V.T).numpy(), atol=1e-3)
