"""Subspace math: projection orthogonality, sketches spanning the residual subspace, basis growth."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.models import MLP, ConvNet
from fedcl.subspace import (
    empty_basis,
    grow_basis,
    layer_inputs,
    orthonormal_extend,
    project_gradients,
    project_update,
    projectable_layers,
    residual,
    sketch,
    threshold_rank,
    unfold_input,
    weight_view,
)


def random_basis(d: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g))
    return q.float()


def principal_angles_deg(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    qa, _ = torch.linalg.qr(a.double())
    qb, _ = torch.linalg.qr(b.double())
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return np.degrees(np.arccos(s.numpy()))


def test_projected_update_is_orthogonal_to_bases_linear_and_conv() -> None:
    # Prepare: a linear weight (out=5, d=12) and a conv weight (8, 3, 3, 3) -> d = 27
    g = torch.Generator().manual_seed(1)
    delta = {"lin.weight": torch.randn(5, 12, generator=g), "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
             "lin.bias": torch.randn(5, generator=g)}
    bases = {"lin": random_basis(12, 4), "conv": random_basis(27, 10, seed=2)}
    # Execute
    out = project_update(delta, bases)
    # Assert: ||Delta_proj U|| <= 1e-5 ||Delta||; biases untouched
    for layer, key in (("lin", "lin.weight"), ("conv", "conv.weight")):
        residual_norm = torch.linalg.norm(weight_view(out[key]) @ bases[layer])
        assert residual_norm <= 1e-5 * torch.linalg.norm(delta[key])
    assert torch.equal(out["lin.bias"], delta["lin.bias"])


def test_sum_of_client_sketches_spans_stacked_residuals() -> None:
    # Prepare: 3 clients whose activations live in a shared 6-dim subspace of R^20
    d, rank = 20, 6
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g))[0]
    U = random_basis(d, 3, seed=5)
    residuals = [residual(basis @ torch.randn(rank, 50, generator=g), U) for _ in range(3)]
    # Execute: each client sketches with its own private Omega; the server sums
    Y = sum(sketch(R, d, torch.Generator().manual_seed(100 + i)) for i, R in enumerate(residuals))
    # Assert: top singular vectors of Y span the same subspace as [R_1 R_2 R_3]
    stacked = torch.cat(residuals, dim=1)
    k = int(torch.linalg.matrix_rank(stacked))
    uy = torch.linalg.svd(Y.double(), full_matrices=False)[0][:, :k]
    us = torch.linalg.svd(stacked.double(), full_matrices=False)[0][:, :k]
    assert principal_angles_deg(uy, us).max() < 1e-3


def test_threshold_rule_picks_k_by_hand() -> None:
    # s^2 = [50, 30, 15, 5] / 100 -> cumulative 0.5, 0.8, 0.95, 1.0
    s = torch.sqrt(torch.tensor([50.0, 30.0, 15.0, 5.0]))
    assert threshold_rank(s, 0.79) == 2
    assert threshold_rank(s, 0.8) == 3  # strictly greater than eps'
    assert threshold_rank(s, 0.2) == 1


def test_grow_basis_threshold_and_dimension_cap() -> None:
    # Prepare: Y with known singular values along e_1..e_4 of R^6
    d = 6
    Y = torch.zeros(d, d)
    for j, v in enumerate([50.0, 30.0, 15.0, 5.0]):
        Y[j, j] = v**0.5
    # r_bar = 1, eps = 0.79 -> eps' = 0.79 -> k = 2
    U = grow_basis(empty_basis(d), Y, r_bar=1.0, eps=0.79)
    assert U.shape == (d, 2)
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(2), atol=1e-6)
    # repeated growth never exceeds d columns and stays orthonormal
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        U = grow_basis(U, torch.randn(d, d, generator=g), r_bar=1.0, eps=0.99)
        assert U.shape[1] <= d
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(U.shape[1]), atol=1e-5)


def test_grow_basis_adds_nothing_when_basis_explains_enough() -> None:
    # residual ratio 0.02 < 1 - eps = 0.04 -> eps' < 0
    U = random_basis(8, 2)
    out = grow_basis(U, torch.randn(8, 8), r_bar=0.02, eps=0.96)
    assert torch.equal(out, U)


def test_orthonormal_extend_drops_directions_already_in_span() -> None:
    U = random_basis(10, 3)
    V = torch.cat([U[:, :2] * 2.0, random_basis(10, 1, seed=9)], dim=1)
    out = orthonormal_extend(U, V)
    assert out.shape == (10, 4)


def test_conv_im2col_matches_conv2d() -> None:
    # Prepare
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2, bias=False)
    x = torch.randn(2, 3, 9, 9)
    # Execute
    patches = unfold_input(conv, x)  # (27, 2 * L)
    out = weight_view(conv.weight) @ patches
    # Assert
    ref = F.conv2d(x, conv.weight, padding=1, stride=2)  # (2, 4, 5, 5)
    np.testing.assert_allclose(out.reshape(4, 2, -1).permute(1, 0, 2).reshape(ref.shape).detach().numpy(),
                               ref.detach().numpy(), atol=1e-5)
    assert patches.shape[0] == 3 * 3 * 3


def test_layer_inputs_and_projectable_layers() -> None:
    model = ConvNet((1, 8, 8), 4, channels=[4], hidden=16, num_heads=2)
    layers = projectable_layers(model)
    assert set(layers) == {"body.0", "body.4"}  # conv + hidden linear; the two task heads are excluded
    A = layer_inputs(model, layers, torch.randn(5, 1, 8, 8), max_columns=30, generator=torch.Generator())
    assert A["body.0"].shape == (9, 30) and A["body.4"].shape == (4 * 4 * 4, 5)
    single = MLP((6,), 3, hidden=[5])
    assert set(projectable_layers(single)) == {"body.1", "head.heads.0"}


def test_project_gradients_in_place() -> None:
    model = MLP((6,), 3, hidden=[5])
    model(torch.randn(4, 6)).sum().backward()
    bases = {"body.1": random_basis(6, 2)}
    project_gradients(model, bases)
    assert torch.linalg.norm(model.body[1].weight.grad @ bases["body.1"]) < 1e-6


def test_grow_basis_divides_eps_prime_by_r_bar() -> None:
    # Prepare: s^2 shares 0.5, 0.3, 0.15, 0.05 along e_1..e_4 of R^6
    Y = torch.diag(torch.sqrt(torch.tensor([50.0, 30.0, 15.0, 5.0, 0.0, 0.0])))
    # Execute / Assert: r_bar = 0.8, eps = 0.9 -> eps' = (0.8 - 0.1) / 0.8 = 0.875 -> k = 3
    # (without the division eps' would be 0.7 -> k = 2)
    assert grow_basis(empty_basis(6), Y, r_bar=0.8, eps=0.9).shape == (6, 3)
    # r_bar = 0.4, eps = 0.9 -> eps' = 0.75 -> k = 2; undivided 0.3 -> k = 1
    assert grow_basis(empty_basis(6), Y, r_bar=0.4, eps=0.9).shape == (6, 2)
    # r_bar = 0.05 < 1 - eps -> eps' < 0: the basis already explains enough, nothing is added
    assert grow_basis(empty_basis(6), Y, r_bar=0.05, eps=0.9).shape == (6, 0)
