"""Subspace math: projection orthogonality, sketches spanning the residual subspace, basis growth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.models import MLP, ConvNet
from fedcl.subspace import (
    as_numpy_bases,
    empty_basis,
    exhausted,
    grow_basis,
    largest_angles,
    layer_inputs,
    occupancy,
    occupancy_metrics,
    orthonormal_extend,
    parse_occupancy_metrics,
    principal_angles,
    project_delta,
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


def test_threshold_rank_edge_cases() -> None:
    assert threshold_rank(torch.zeros(3), 0.5) == 0  # no energy, no direction
    s = torch.tensor([3.0, 4.0])  # shares 9/25 = 0.36, 1.0
    assert threshold_rank(s, 0.36) == 2 and threshold_rank(s, 0.35) == 1
    assert threshold_rank(s, 1.0) == 2  # never strictly above: every column


def test_grow_basis_keeps_a_full_or_ratio_free_basis_and_adds_at_least_one_direction() -> None:
    full = torch.eye(4)
    assert torch.equal(grow_basis(full, torch.randn(4, 4), r_bar=1.0, eps=0.99), full)
    U = random_basis(4, 1)
    assert torch.equal(grow_basis(U, torch.randn(4, 4), r_bar=0.0, eps=0.99), U)
    # eps' tiny: the threshold rule picks k = 1 (never 0 once something is to be added)
    Y = torch.diag(torch.tensor([2.0, 1.0, 0.0, 0.0]))
    out = grow_basis(empty_basis(4), Y, r_bar=1.0, eps=0.01)
    assert out.shape == (4, 1)
    torch.testing.assert_close(out.abs(), torch.tensor([[1.0], [0.0], [0.0], [0.0]]))


def test_orthonormal_extend_by_hand_and_at_capacity() -> None:
    U = torch.tensor([[1.0], [0.0], [0.0]])
    V = torch.tensor([[2.0, 5.0], [3.0, 0.0], [0.0, 0.0]])  # e_1 is new; the second column is inside span(U)
    out = orthonormal_extend(U, V)
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[:, 0], U[:, 0])
    torch.testing.assert_close(out[:, 1].abs(), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(orthonormal_extend(U, torch.zeros(3, 0)), U)  # nothing offered
    assert torch.equal(orthonormal_extend(torch.eye(3), torch.randn(3, 2)), torch.eye(3))  # already d columns
    # never more than d columns, even when V brings more new directions than there is room for
    assert orthonormal_extend(random_basis(3, 2), torch.randn(3, 3)).shape == (3, 3)


def test_residual_and_project_delta_by_hand() -> None:
    U = torch.tensor([[1.0], [0.0]])
    A = torch.tensor([[3.0, 1.0], [4.0, 2.0]])
    torch.testing.assert_close(residual(A, U), torch.tensor([[0.0, 0.0], [4.0, 2.0]]))
    assert residual(A, None) is A and residual(A, empty_basis(2)) is A
    delta = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(project_update({"l.weight": delta}, {"l": U})["l.weight"], torch.tensor([[0.0, 4.0]]))
    # layers without a basis, and non-weight entries, pass through untouched
    same = project_update({"m.weight": delta, "l.bias": delta, "l.weight": delta}, {"l": empty_basis(2)})
    assert same["m.weight"] is delta and same["l.bias"] is delta and same["l.weight"] is delta


def test_sketch_by_hand_with_the_generators_omega() -> None:
    R = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    omega = torch.randn(3, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(sketch(R, 2, torch.Generator().manual_seed(7)), R @ omega)
    # blocks of 2 columns: omega is drawn block by block, the sum of the block products is R Omega
    g = torch.Generator().manual_seed(7)
    o1, o2 = torch.randn(2, 2, generator=g), torch.randn(1, 2, generator=g)
    torch.testing.assert_close(sketch(R, 2, torch.Generator().manual_seed(7), block=2), R[:, :2] @ o1 + R[:, 2:] @ o2)


def test_layer_inputs_batches_subsample_and_restore_training_mode() -> None:
    # Prepare: a linear layer's input matrix is x^T (samples as columns), whatever the batch size
    model = MLP((4,), 3, hidden=[5])
    model.train()
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    layers = projectable_layers(model)
    # Execute
    A = layer_inputs(model, layers, x, batch_size=3)
    # Assert
    torch.testing.assert_close(A["body.1"], x.T)
    assert A["head.heads.0"].shape == (5, 7) and model.training
    # at most max_columns columns, a seeded sorted subset of the original ones
    sub = layer_inputs(model, layers, x, max_columns=4, generator=torch.Generator().manual_seed(1))["body.1"]
    assert sub.shape == (4, 4)
    cols = [int((x.T == sub[:, j : j + 1]).all(dim=0).nonzero()[0, 0]) for j in range(4)]
    assert cols == sorted(cols) and len(set(cols)) == 4
    model.eval()
    layer_inputs(model, layers, x)
    assert not model.training


def test_layer_inputs_of_a_multi_head_model_run_the_tasks_head() -> None:
    model = MLP((4,), 4, hidden=[5], num_heads=2)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(int(args[1])))
    layer_inputs(model, projectable_layers(model), torch.randn(3, 4), task_id=1)
    layer_inputs(model, projectable_layers(model), torch.randn(3, 4))
    assert seen == [1, 0]


def test_unfold_rejects_string_padding_and_projectable_layers_keep_a_single_head() -> None:
    import pytest

    with pytest.raises(ValueError, match="string padding"):
        unfold_input(nn.Conv2d(1, 1, 3, padding="same"), torch.randn(1, 1, 5, 5))
    assert weight_view(torch.zeros(4, 2, 3, 3)).shape == (4, 18)


def test_project_gradients_skips_layers_without_basis_or_gradient() -> None:
    model = MLP((6,), 3, hidden=[5])
    model(torch.randn(4, 6)).sum().backward()
    head = model.get_submodule("head.heads.0")
    assert isinstance(head, nn.Linear) and head.weight.grad is not None
    before = head.weight.grad.clone()
    project_gradients(model, {"body.1": random_basis(6, 2)})
    assert torch.equal(head.weight.grad, before)  # no basis: untouched
    model.zero_grad(set_to_none=True)
    project_gradients(model, {"body.1": random_basis(6, 2)})  # no gradient: nothing to do, no error


def test_a_model_with_a_plain_head_projects_it() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(3, 4)
            self.head = nn.Linear(4, 2)  # no num_heads attribute: a single shared head

    assert set(projectable_layers(Plain())) == {"body", "head"}


def test_im2col_with_dilation_matches_conv2d() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=2, dilation=2, bias=False)
    x = torch.randn(1, 2, 7, 7)
    out = weight_view(conv.weight) @ unfold_input(conv, x)
    ref = F.conv2d(x, conv.weight, padding=2, dilation=2)
    np.testing.assert_allclose(out.reshape(ref.shape).detach().numpy(), ref.detach().numpy(), atol=1e-5)


def test_bases_and_sketches_are_float32_whatever_the_default_dtype() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert empty_basis(3).dtype == torch.float32
        R = torch.ones(2, 3, dtype=torch.float32)
        assert sketch(R, 2, torch.Generator().manual_seed(0)).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)
    assert as_numpy_bases({"l": torch.eye(2, dtype=torch.float64)})["l"].dtype == np.float32


def test_sketch_default_block_is_8192_columns() -> None:
    R = torch.randn(2, 8193, generator=torch.Generator().manual_seed(0))
    want = sketch(R, 1, torch.Generator().manual_seed(1), block=8192)
    assert torch.equal(sketch(R, 1, torch.Generator().manual_seed(1)), want)


def test_threshold_rank_with_small_total_energy() -> None:
    assert threshold_rank(torch.tensor([0.6, 0.3]), 0.5) == 1  # total energy 0.45 < 1 still counts


def test_orthonormal_extend_tolerance_is_relative_to_the_largest_new_direction() -> None:
    big = torch.tensor([[1000.0, 0.0], [0.0, 1e-3], [0.0, 0.0]])
    assert orthonormal_extend(empty_basis(3), big).shape == (3, 1)  # 1e-3 < 1e-5 * 1000: dropped
    small = torch.tensor([[1.0, 0.0], [0.0, 1.5e-5], [0.0, 0.0]])
    assert orthonormal_extend(empty_basis(3), small).shape == (3, 2)  # 1.5e-5 > 1e-5 * max(1, 1): kept


def test_grow_basis_adds_nothing_when_eps_prime_is_exactly_zero() -> None:
    # r_bar = 1 - eps = 0.5 -> eps' = 0: the basis already explains the threshold
    assert grow_basis(empty_basis(3), torch.eye(3), r_bar=0.5, eps=0.5).shape == (3, 0)


def test_projection_keeps_the_updates_dtype_and_skips_non_weight_entries() -> None:
    U = torch.tensor([[1.0], [0.0]])
    delta = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    out = project_delta(delta, U)
    assert out.dtype == torch.float64 and out.tolist() == [[0.0, 4.0]]
    same = project_update({"fc.bias_v": torch.tensor([[3.0, 4.0]])}, {"fc": U})  # not a ".weight" entry
    assert same["fc.bias_v"].tolist() == [[3.0, 4.0]]


def test_largest_angles_per_layer_by_hand() -> None:
    # Prepare: span(e0, e1) against itself, span(e2, e3), span(e0, e1 tilted by 0.3 rad) and e1 alone
    e = torch.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    tilted = torch.tensor([[1.0, 0.0], [0.0, c], [0.0, s], [0.0, 0.0]], dtype=torch.float32)  # angles 0 and 0.3
    ours = {"same": e[:, :2], "orthogonal": e[:, :2], "tilted": e[:, :2], "inside": e[:, :2], "empty": e[:, :2],
            "only_ours": e[:, :1]}
    theirs = {"same": e[:, :2], "orthogonal": e[:, 2:], "tilted": tilted, "inside": e[:, 1:2], "empty": e[:, :0]}
    # Execute
    out = largest_angles(ours, theirs)
    # Assert: radians, the smaller basis' angles; layers of one side only are left out
    assert sorted(out) == ["empty", "inside", "orthogonal", "same", "tilted"]
    assert out["same"]["largest_angle_rad"] == pytest.approx(0.0, abs=1e-6)
    assert out["orthogonal"]["largest_angle_rad"] == pytest.approx(np.pi / 2)
    assert out["tilted"]["largest_angle_rad"] == pytest.approx(0.3, abs=1e-6)
    assert out["inside"] == {"largest_angle_rad": pytest.approx(0.0, abs=1e-6), "dims": [2, 1]}
    assert out["empty"] == {"largest_angle_rad": None, "dims": [2, 0]}


def test_principal_angles_by_hand_and_for_an_empty_basis() -> None:
    # Prepare: span(e0, e1) against span(e0, (e1 + e2) / sqrt 2) in R^3: angles 0 and 45 degrees
    U = torch.eye(3)[:, :2]
    V = torch.stack([torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]) / 2 ** 0.5], dim=1)
    # Execute
    got = principal_angles(U, V)
    # Assert: ascending, float64; a basis with no column gives no angle whichever side it is on
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), [0.0, np.pi / 4], atol=1e-6)
    for a, b in ((U, torch.zeros(3, 0)), (torch.zeros(3, 0), U), (torch.zeros(3, 0), torch.zeros(3, 0))):
        empty = principal_angles(a, b)
        assert empty.shape == (0,) and empty.dtype == torch.float64
    one = principal_angles(torch.eye(3)[:, :1], V)  # a one-column basis has one angle (0: e0 is in both)
    assert one.shape == (1,) and float(one[0]) == pytest.approx(0.0, abs=1e-6)


def test_principal_angles_of_identical_and_opposite_spans_are_zero() -> None:
    # rounding can push cos a hair past 1 (or -1 after a sign flip); arccos must still be 0, not NaN
    U = torch.linalg.qr(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))[0]
    for V in (U, -U, U * (1 + 1e-7)):
        got = principal_angles(U, V)
        assert torch.isfinite(got).all() and float(got.max()) < 1e-3


def test_exhausted_warns_above_the_limit_only_and_names_the_numbers() -> None:
    layers = {"fc1": occupancy(19, 20), "fc2": occupancy(45, 50), "fc3": occupancy(3, 10)}
    # fc2 sits exactly at the limit 0.9: not above it
    assert exhausted(layers) == {"fc1": "plasticity nearly exhausted: layer fc1 holds 19 of 20 directions (95 %)"}
    assert exhausted(layers, limit=0.2) == {
        "fc1": "plasticity nearly exhausted: layer fc1 holds 19 of 20 directions (95 %)",
        "fc2": "plasticity nearly exhausted: layer fc2 holds 45 of 50 directions (90 %)",
        "fc3": "plasticity nearly exhausted: layer fc3 holds 3 of 10 directions (30 %)",
    }


def test_occupancy_metrics_round_trip_and_ignore_other_keys() -> None:
    # Prepare: two layers (one with eps'), a layer name holding a slash, and unrelated metric keys
    layers = {"body.0": occupancy(4, 16, 0.25), "head/x": occupancy(2, 8)}
    flat = occupancy_metrics(layers)
    noisy = {**flat, "loss": 1.0, "subspace-dim": 3.0, "other/body.0": 5.0, "subspace-dim/half": 2.0}
    # Execute
    back = parse_occupancy_metrics(noisy)
    # Assert: the flat keys by hand; the layers come back whole, a layer without its input dimension is left out
    assert flat == {"subspace-dim/body.0": 4.0, "subspace-input-dim/body.0": 16.0, "subspace-eps/body.0": 0.25,
                    "subspace-dim/head/x": 2.0, "subspace-input-dim/head/x": 8.0}
    assert back == layers
    assert parse_occupancy_metrics({"subspace-input-dim/only": 8.0}) == {}


def test_layer_inputs_of_a_linear_layer_fed_a_sequence_stack_every_position() -> None:
    # Prepare: a linear layer applied to (batch, positions, features) inputs
    model = nn.Sequential(nn.Linear(4, 2))
    x = torch.arange(5 * 3 * 4, dtype=torch.float32).reshape(5, 3, 4)
    # Execute
    got = layer_inputs(model, {"0": model[0]}, x, generator=torch.Generator().manual_seed(0))
    # Assert: one column per (sample, position), the features as rows
    torch.testing.assert_close(got["0"], x.reshape(15, 4).T)


def test_capped_columns_keep_a_matrix_at_the_cap_as_it_is() -> None:
    from fedcl.subspace import _capped_columns

    # Prepare: exactly max_columns columns, then one more
    A = torch.arange(12.0).reshape(2, 6)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    # Execute
    same = _capped_columns(A, 6, g)
    drawn = g.get_state()
    capped = _capped_columns(A, 5, g)
    # Assert: at the cap nothing is drawn or reordered; above it, 5 distinct columns of A
    assert same is A and torch.equal(drawn, state)
    assert capped.shape == (2, 5) and len({tuple(c.tolist()) for c in capped.T}) == 5
    assert all(any(torch.equal(c, a) for a in A.T) for c in capped.T)


def test_a_zero_residual_adds_nothing_even_with_min_new() -> None:
    # Prepare: a 1-column basis of R^4 and a sketch with energy, but a zero residual ratio
    U = torch.eye(4)[:, :1].contiguous()
    Y = torch.eye(4)[:, 1:3] * 3.0
    # Execute / Assert: r_bar = 0 means the clients' inputs lie in span(U) already
    assert grow_basis(U, Y, r_bar=0.0, eps=0.97, min_new=2) is U
    assert grow_basis(U, Y, r_bar=0.5, eps=0.97, min_new=2).shape == (4, 3)


def test_occupancy_of_an_empty_layer_and_without_a_finite_eps() -> None:
    assert occupancy(0, 0) == {"dim": 0, "input_dim": 0, "share": 0.0, "eps_used": None}
    for eps in (float("inf"), float("-inf"), float("nan")):
        assert occupancy(1, 4, eps)["eps_used"] is None
    assert occupancy(1, 4, 0.5) == {"dim": 1, "input_dim": 4, "share": 0.25, "eps_used": 0.5}
