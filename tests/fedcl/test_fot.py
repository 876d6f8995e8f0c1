"""FOT client statistics and server state (no Flower)."""

from __future__ import annotations

import numpy as np
import torch

from fedcl import keys
from fedcl.fot.client import gpse_statistics
from fedcl.fot.server import FOTState
from fedcl.models import MLP
from fedcl.subspace import empty_basis, weight_view


def test_gpse_statistics_shapes_and_ratio() -> None:
    # Prepare
    torch.manual_seed(0)
    model = MLP((10,), 4, hidden=[8])
    x = torch.randn(40, 10)
    # Execute
    sketches, stats = gpse_statistics(model, x, {}, max_samples=30, generator=torch.Generator().manual_seed(1))
    # Assert: no basis yet -> the residual is the whole input, ratio 1
    assert sketches["body.1"].shape == (10, 10) and sketches["head.heads.0"].shape == (8, 8)
    assert stats[keys.NUM_EXAMPLES] == 30
    assert abs(stats["body.1/ratio-weighted"] - 30.0) < 1e-4


def test_gpse_with_full_basis_has_zero_residual() -> None:
    model = MLP((6,), 3, hidden=[4])
    bases = {"body.1": np.eye(6, dtype=np.float32)}
    sketches, stats = gpse_statistics(model, torch.randn(20, 6), bases, generator=torch.Generator().manual_seed(0))
    assert np.abs(sketches["body.1"]).max() < 1e-5
    assert stats["body.1/ratio-weighted"] < 1e-5


def test_client_statistics_fit_in_memory_budget_for_paper_mlp() -> None:
    # the paper's MLP 784-400-400-400-10, 1,000 samples, sketch_factor 1: the reply is the sketches
    model = MLP((1, 28, 28), 10, hidden=[400, 400, 400])
    sketches, _ = gpse_statistics(model, torch.randn(1000, 1, 28, 28), {}, max_samples=1000,
                                  generator=torch.Generator().manual_seed(0))
    total = sum(v.nbytes for v in sketches.values())
    assert total == 4 * (784 * 784 + 3 * 400 * 400)  # 4.4 MB
    assert total < 200e6


def test_server_projection_keeps_old_directions_and_state_round_trip() -> None:
    # Prepare: a basis for layer "body.1" (d = 6)
    q = torch.linalg.qr(torch.randn(6, 2, generator=torch.Generator().manual_seed(0)))[0]
    state = FOTState(bases={"body.1": q}, eps=0.9, d_eps=0.01)
    old = {"body.1.weight": torch.randn(4, 6), "body.1.bias": torch.randn(4)}
    new = {"body.1.weight": torch.randn(4, 6), "body.1.bias": torch.randn(4)}
    # Execute
    out = state.project(old, new)
    # Assert: the update W - W_new has no component in span(U); bias takes the plain average
    assert torch.linalg.norm(weight_view(old["body.1.weight"] - out["body.1.weight"]) @ q) < 1e-5
    assert torch.equal(out["body.1.bias"], new["body.1.bias"])
    restored = FOTState()
    restored.load_state_dict(state.state_dict())
    assert torch.equal(restored.bases["body.1"], q) and restored.eps == 0.9


def test_update_bases_grows_and_raises_eps() -> None:
    state = FOTState(bases={"l": empty_basis(5)}, eps=0.9, d_eps=0.02)
    Y = np.diag([3.0, 2.0, 1.0, 0.1, 0.01]).astype(np.float32)
    state.update_bases({"l": Y}, {"l": 10.0}, total_examples=10.0)
    assert 1 <= state.basis_dims()["l"] <= 5
    assert abs(state.eps - 0.92) < 1e-9
