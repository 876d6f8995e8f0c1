"""FOT client statistics and server state (no Flower)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import fedcl.keys as keys
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


def test_fedproject_keeps_old_weights_inside_span_and_takes_fedavg_outside_by_hand() -> None:
    # Prepare: layer "l" with d = 3 and basis U = e_0; W (round start) and the plain average W_bar
    state = FOTState(bases={"l": torch.eye(3)[:, :1]})
    W = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    W_bar = torch.tensor([[0.5, 1.0, -1.0], [2.0, 7.0, 0.0]])
    # Execute
    out = state.project({"l.weight": W, "l.bias": torch.zeros(2)}, {"l.weight": W_bar, "l.bias": torch.ones(2)})
    # Assert: Delta = W - W_bar, Delta_proj = Delta with column 0 removed, W - Delta_proj:
    # the input direction e_0 keeps W (the part inside span(U) is removed from the update),
    # every other direction takes FedAvg's W_bar exactly (the update outside span(U) is FedAvg's)
    want = torch.tensor([[1.0, 1.0, -1.0], [4.0, 7.0, 0.0]])
    assert torch.equal(out["l.weight"], want)
    assert torch.equal(out["l.bias"], torch.ones(2))  # not projected: the plain average


def test_fedproject_with_an_oblique_basis_matches_the_formula_and_moves_the_weights() -> None:
    # Prepare: U spans (e_0 + e_1) / sqrt(2) in R^3
    u = torch.tensor([[1.0], [1.0], [0.0]]) / 2**0.5
    state = FOTState(bases={"l": u})
    W = torch.tensor([[2.0, 0.0, 1.0]])
    W_bar = torch.tensor([[0.0, 0.0, 3.0]])
    # Execute
    out = state.project({"l.weight": W}, {"l.weight": W_bar})["l.weight"]
    # Assert: Delta = [2, 0, -2]; Delta u u^T = [1, 1, 0]; Delta_proj = [1, -1, -2]; W - Delta_proj = [1, 1, 3]
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 3.0]]), rtol=0, atol=1e-6)
    # the global update W - out is orthogonal to u, non-zero, and equals FedAvg's update W - W_bar off span(u)
    update = W - out
    assert float(update.abs().sum()) > 1.0
    torch.testing.assert_close(update @ u, torch.zeros(1, 1), rtol=0, atol=1e-6)
    off = torch.eye(3) - u @ u.T
    torch.testing.assert_close(update @ off, (W - W_bar) @ off, rtol=0, atol=1e-6)


def test_update_bases_divides_the_ratio_sum_by_the_examples() -> None:
    # Prepare: s^2 shares 0.5, 0.3, 0.15, 0.05; sum n_i r_i = 8 over 10 examples -> r_bar = 0.8
    Y = np.diag(np.sqrt([50.0, 30.0, 15.0, 5.0, 0.0])).astype(np.float32)
    state = FOTState(bases={}, eps=0.9)
    # Execute
    state.update_bases({"l": Y}, {"l": 8.0}, total_examples=10.0)
    # Assert: eps' = (0.8 - 0.1) / 0.8 = 0.875 -> k = 3 (0.8 <= 0.875 < 0.95); the first three axes
    U = state.bases["l"]
    assert U.shape == (5, 3)
    torch.testing.assert_close((U @ U.T).abs(), torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])),
                               rtol=0, atol=1e-6)


def test_update_bases_without_examples_is_an_error() -> None:
    state = FOTState(bases={})
    try:
        state.update_bases({"l": np.eye(2, dtype=np.float32)}, {"l": 1.0}, total_examples=0.0)
    except ValueError as exc:
        assert str(exc) == "FOT: GPSE statistics with no examples"
    else:
        raise AssertionError("update_bases accepted zero examples")


def test_gpse_ratio_and_sketch_against_a_partial_basis_by_hand() -> None:
    # Prepare: a linear first layer sees x itself; the basis holds e_0 of R^4
    model = MLP((4,), 3, hidden=[5])
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    bases = {"body.1": np.eye(4, dtype=np.float32)[:, :1]}
    # Execute: max_samples >= n, so the seeded subset is a permutation of every sample
    sketches, stats = gpse_statistics(model, x, bases, sketch_factor=2, max_samples=50,
                                      generator=torch.Generator().manual_seed(1))
    # Assert: r = ||R|| / ||A|| with R = A without its e_0 row; n r summed; the sketch lies in span(R)
    A = x.T
    want = float(torch.linalg.norm(A[1:])) / float(torch.linalg.norm(A))
    assert stats[keys.NUM_EXAMPLES] == 12
    assert abs(stats["body.1/ratio-weighted"] - 12 * want) < 1e-4
    Y = sketches["body.1"]
    assert Y.shape == (4, 8) and np.abs(Y[0]).max() < 1e-5 and np.abs(Y[1:]).max() > 0.1
    assert abs(stats["head.heads.0/ratio-weighted"] - 12.0) < 1e-4  # no basis for the head yet


def test_gpse_of_all_zero_inputs_has_ratio_zero() -> None:
    model = MLP((3,), 2, hidden=[4])
    _, stats = gpse_statistics(model, torch.zeros(5, 3), {}, generator=torch.Generator().manual_seed(0))
    assert stats["body.1/ratio-weighted"] == 0.0


def test_gpse_uses_a_random_subset_of_max_samples() -> None:
    model = MLP((3,), 2, hidden=[4])
    x = torch.zeros(10, 3)
    x[0] = 1.0  # one sample carries all the energy
    hits = 0
    for seed in range(10):
        sketches, stats = gpse_statistics(model, x, {}, max_samples=1, generator=torch.Generator().manual_seed(seed))
        assert stats[keys.NUM_EXAMPLES] == 1
        hits += int(np.abs(sketches["body.1"]).max() > 0)
    assert 0 < hits < 10  # a different sample per seed, not always the first one


def test_gpse_is_a_function_of_its_generator_and_limits() -> None:
    # Prepare: a conv model (many patch columns) and 600 samples
    from fedcl.models import ConvNet

    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 3, channels=[2], hidden=4)
    x = torch.randn(600, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def run(**kw: object) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        torch.manual_seed(int(kw.pop("global_seed", 0)))  # type: ignore[call-overload]
        return gpse_statistics(model, x, {}, generator=torch.Generator().manual_seed(5), **kw)  # type: ignore[arg-type]

    # Execute / Assert: the global RNG plays no part
    a, sa = run(global_seed=0)
    b, _ = run(global_seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # defaults: 500 samples and at most 20,000 of their 500 * 64 patch columns
    assert sa[keys.NUM_EXAMPLES] == 500
    c, _ = run(max_samples=500, max_columns=20_000, batch_size=256)
    assert all(np.array_equal(a[k], c[k]) for k in a)
    # max_columns caps the columns behind each sketch: one column, a rank-one sketch
    d, _ = run(max_columns=1)
    assert np.linalg.matrix_rank(d["body.0"].astype(np.float64), tol=1e-6) == 1


def test_gpse_accepts_float64_bases() -> None:
    model = MLP((4,), 3, hidden=[5])
    bases = {"body.1": np.eye(4)[:, :2]}  # float64, as a restored checkpoint might hold
    sketches, stats = gpse_statistics(model, torch.randn(8, 4), bases, generator=torch.Generator().manual_seed(0))
    assert sketches["body.1"].dtype == np.float32 and np.abs(sketches["body.1"][:2]).max() < 1e-5


def test_project_with_an_empty_basis_is_the_plain_average_bit_for_bit() -> None:
    # W - (W - W_bar) is not W_bar in float32 (1e8 - (1e8 - 1) rounds to 0): an empty basis must not project
    state = FOTState(bases={"fc": empty_basis(2)})
    old = {"fc.weight": torch.full((1, 2), 1e8)}
    new = {"fc.weight": torch.ones(1, 2)}
    assert torch.equal(state.project(old, new)["fc.weight"], new["fc.weight"])


def test_project_touches_weight_entries_only() -> None:
    # "fc.bias_v" shares the 7-character tail length of ".weight" with "fc": it must not be projected
    state = FOTState(bases={"fc": torch.eye(2)[:, :1]})
    old = {"fc.bias_v": torch.ones(1, 2), "fc.weight": torch.ones(1, 2)}
    new = {"fc.bias_v": torch.zeros(1, 2), "fc.weight": torch.zeros(1, 2)}
    out = state.project(old, new)
    assert torch.equal(out["fc.bias_v"], torch.zeros(1, 2))
    assert torch.equal(out["fc.weight"], torch.tensor([[1.0, 0.0]]))


def test_update_bases_extends_the_existing_basis_and_caps_eps() -> None:
    # Prepare: e_0 already protected; a wide sketch (d x 2d) of inputs in span(e_0, e_1)
    state = FOTState(bases={"l": torch.eye(3)[:, :1].contiguous()}, eps=0.99, d_eps=0.05)
    Y = np.zeros((3, 6), dtype=np.float32)
    Y[0, 0], Y[1, 1] = 2.0, 1.0
    # Execute
    state.update_bases({"l": Y, "m": np.eye(2, dtype=np.float32)}, {"l": 5.0}, total_examples=5.0)
    # Assert: e_0 stays the first column exactly, e_1 is added; no ratio for "m" -> r_bar 0, nothing added
    U = state.bases["l"]
    assert U.shape == (3, 2) and torch.equal(U[:, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(U[:, 1].abs(), torch.tensor([0.0, 1.0, 0.0]))
    assert state.bases["m"].shape == (2, 0)
    assert state.eps == 1.0  # 0.99 + 0.05 capped
    state.update_bases({"l": Y}, {"l": 1.0}, total_examples=1.0)  # one example is enough


def test_state_restores_float32_bases_and_both_thresholds() -> None:
    restored = FOTState()
    restored.load_state_dict({"bases": {"l": np.eye(3)[:, :1]}, "eps": 0.9, "d_eps": 0.02, "growth": []})
    assert restored.bases["l"].dtype == torch.float32 and restored.d_eps == 0.02 and restored.eps == 0.9
    assert FOTState(bases={"l": torch.eye(2)}).state_dict()["bases"]["l"].dtype == np.float32


def test_gpse_ratio_of_small_inputs_is_still_one_without_a_basis() -> None:
    model = MLP((3,), 2, hidden=[4])
    _, stats = gpse_statistics(model, torch.full((4, 3), 0.01), {}, generator=torch.Generator().manual_seed(0))
    assert abs(stats["body.1/ratio-weighted"] - 4.0) < 1e-4  # ||A|| = 0.035 < 1, r = 1


def test_update_bases_grows_from_the_layers_own_basis_with_wide_sketches() -> None:
    # Prepare: "l" already protects e_0; its new inputs lie mostly along e_1 (s = 3) and a little along e_2 (s = 1);
    # "m" has no basis yet and a wide (d x 2d) sketch
    state = FOTState(bases={"l": torch.eye(3)[:, :1].contiguous()}, eps=0.5)
    Y_l = np.diag([0.0, 3.0, 1.0]).astype(np.float32)
    Y_m = np.zeros((2, 4), dtype=np.float32)
    Y_m[1, 3] = 1.0
    # Execute: r_bar = 1 -> eps' = 0.5 -> k = 1 (9 / 10 > 0.5) for "l"; "m" gets its one direction
    state.update_bases({"l": Y_l, "m": Y_m}, {"l": 2.0, "m": 2.0}, total_examples=2.0)
    # Assert: e_1 is added to e_0 (not a fresh basis of e_1 alone)
    assert state.bases["l"].shape == (3, 2)
    torch.testing.assert_close(state.bases["l"].abs(), torch.eye(3)[:, :2])
    assert state.bases["m"].shape == (2, 1)
    torch.testing.assert_close(state.bases["m"].abs(), torch.tensor([[0.0], [1.0]]))


def test_gpse_never_reads_held_out_or_forgotten_samples(message_identity: None) -> None:
    from flwr.app import Array, ArrayRecord

    from fedcl.client.app import app as fedcl_app
    from fedcl.client.instruction import query_config
    from fedcl.config import compose, to_json
    from fedcl.data import build_stream
    from fedcl.fot import protocol
    from fedcl.keys import NUM_EXAMPLES
    from fedcl.models import build_model
    from fedcl.unlearning.data import Exclusions
    from tests.conftest import synthetic_overrides
    from tests.fedcl.privacy.inproc import InProcGrid

    # Prepare: a FOT run with a deletion request holds out a tenth of every client's data before training
    cfg = compose(synthetic_overrides("strategy=fot", "strategy.gpse_max_samples=100000", "unlearning=none",
                                      "federation.state_store=context",
                                      "unlearning.requests=[{round:3,kind:client,target:1}]"))
    stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    arrays = ArrayRecord({k: Array(v.detach().numpy()) for k, v in model.state_dict().items()})
    msgs = [protocol.gpse_query(arrays, query_config(to_json(cfg), 2, c, 0), {}, n) for c, n in enumerate([1, 2, 3])]
    # Execute
    replies = InProcGrid(fedcl_app, [1, 2, 3]).send_and_receive(msgs)
    # Assert: each client's GPSE ran on its training samples only (the very rows: the sketch is theirs, bit for bit)
    from fedcl.seeding import torch_generator

    fot = cfg.strategy
    for c, r in enumerate(replies):
        sketch_rec, stats = protocol.reply_records(r)
        x, y = stream.client_data(0, c)
        kept = Exclusions.of_run(cfg).training_data(x, y, 0, c)[0]
        assert kept.shape[0] < y.shape[0] and stats[NUM_EXAMPLES] == kept.shape[0]
        want, _ = gpse_statistics(model, kept, {}, sketch_factor=fot.sketch_factor,  # type: ignore[union-attr]
                                  max_samples=fot.gpse_max_samples,  # type: ignore[union-attr]
                                  generator=torch_generator(cfg.seed, "omega", c, 0), task_id=0,
                                  dropout=fot.gpse_dropout)  # type: ignore[union-attr]
        for name, y_sketch in want.items():
            np.testing.assert_array_equal(sketch_rec[name].numpy(), y_sketch)


def test_gpse_handler_never_sketches_the_forgotten_classes(message_identity: None) -> None:
    from flwr.app import Context, RecordDict

    from fedcl.client.instruction import parse, query_config
    from fedcl.config import compose, to_json
    from fedcl.data import build_stream
    from fedcl.fot import client as fot_client
    from fedcl.fot import protocol as gpse
    from fedcl.models import build_model
    from fedcl.records import array_record
    from tests.conftest import synthetic_overrides

    # Prepare: client 0's task-0 data (classes 0 and 1), every sample eligible for the sketch
    cfg = compose(synthetic_overrides("strategy=fot", "strategy.gpse_max_samples=100000"))
    stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
    _, y = stream.client_data(0, 0)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    arrays = array_record({k: v for k, v in model.state_dict().items()})
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})

    def ask(**extra: object) -> float:
        msg = gpse.gpse_query(arrays, query_config(to_json(cfg), 2, 0, 0, **extra), {}, 1)
        reply = fot_client.handle(msg, ctx, parse(msg, ctx))
        return float(reply.content[gpse.STATS][keys.NUM_EXAMPLES])  # type: ignore[index]

    # Execute
    everything, without_0 = ask(), ask(**{keys.FORGET_CLASSES: [0]})
    # Assert: with class 0 forgotten the sketch covers exactly the client's other samples
    assert set(y.tolist()) == {0, 1}
    assert everything == len(y) and without_0 == int((y != 0).sum()) < len(y)


def test_min_new_directions_adds_one_direction_when_the_basis_already_explains_eps() -> None:
    # Prepare: the basis holds e0; the residual sketch lies in span(e1, e2) but carries little energy
    # (r_bar = 0.01 < 1 - eps, so eps' = (r_bar - (1 - eps)) / r_bar < 0)
    Y = np.zeros((5, 5), dtype=np.float32)
    Y[1, 0], Y[2, 1] = 2.0, 1.0
    states = {m: FOTState(bases={"l": torch.eye(5)[:, :1].contiguous()}, eps=0.96, min_new=m) for m in (0, 1, 2)}
    # Execute
    for state in states.values():
        state.update_bases({"l": Y}, {"l": 0.1}, total_examples=10.0)
    # Assert: ours adds nothing; the official rule adds the strongest residual direction(s)
    assert [s.basis_dims()["l"] for s in states.values()] == [1, 2, 3]
    U = states[1].bases["l"]
    np.testing.assert_allclose(np.abs(U[:, 1].numpy()), [0, 1, 0, 0, 0], atol=1e-6)
    assert [s.growth[-1]["layers"]["l"]["added"] for s in states.values()] == [0, 1, 2]
    assert states[1].growth[-1]["layers"]["l"]["eps_used"] < 0


def test_gpse_dropout_collects_the_activations_with_dropout_on() -> None:
    from fedcl.subspace import layer_inputs, projectable_layers

    # Prepare: the official MLP's per-layer dropout (0.2 after the first hidden layer, 0.5 after the second)
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[8, 8], dropout=[0.2, 0.5])
    model.train()
    layers = projectable_layers(model)
    x = torch.randn(40, 6)

    def run(dropout: bool, seed: int) -> dict[str, torch.Tensor]:
        return layer_inputs(model, layers, x, generator=torch.Generator().manual_seed(seed), dropout=dropout)

    # Execute
    off, on, on_again, on_other = run(False, 1), run(True, 1), run(True, 1), run(True, 2)
    # Assert: the input layer sees the data; the second layer records the first dropout's input (the official
    # hooks sit on the ReLUs), so it matches eval mode; the head's inputs went through the 0.2-dropped layer,
    # so they differ from eval mode, reproducibly for the same generator and not for another
    assert list(off) == ["body.1", "body.4", "head.heads.0"]
    torch.testing.assert_close(on["body.1"], off["body.1"])
    torch.testing.assert_close(on["body.4"], off["body.4"])
    assert not torch.allclose(on["head.heads.0"], off["head.heads.0"])
    torch.testing.assert_close(on["head.heads.0"], on_again["head.heads.0"])
    assert not torch.allclose(on["head.heads.0"], on_other["head.heads.0"])
    assert model.training  # the model's mode is left as it was



def test_train_records_are_the_query_replys_statistics_in_the_last_round_only(message_identity: None) -> None:
    from flwr.app import Context, RecordDict

    from fedcl.client.instruction import parse, query_config
    from fedcl.config import compose, to_json
    from fedcl.data import build_stream
    from fedcl.fot import client as fot_client
    from fedcl.fot import protocol as gpse
    from fedcl.models import build_model
    from fedcl.records import array_record
    from tests.conftest import synthetic_overrides

    # Prepare: the official GPSE (sketches on the train reply) and the query GPSE, same model, data and bases
    def setup(*extra: str) -> tuple[Any, Any, Any, torch.Tensor, Any]:
        cfg = compose(synthetic_overrides("strategy=fot", "strategy.gpse_max_samples=100000", *extra))
        stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
        model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
        bases = {"body.0": torch.eye(int(np.prod(stream.in_shape)))[:, :2]}
        msg = gpse.gpse_query(array_record(dict(model.state_dict())), query_config(to_json(cfg), 2, 0, 0), bases, 1)
        ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
        return msg, parse(msg, ctx), model, stream.client_data(0, 0)[0], ctx

    msg, instr, model, x, ctx = setup("strategy.gpse_model=local")
    # Execute
    local = fot_client.train_records(msg, instr, model, x, last_round_of_task=True)
    queried = fot_client.handle(msg, ctx, instr).content
    # Assert: the same sketches and statistics as the query's reply; nothing before the last round or in query mode
    assert set(local) == {gpse.SKETCH, gpse.STATS}
    for name, arr in queried[gpse.SKETCH].items():  # type: ignore[union-attr]
        np.testing.assert_array_equal(local[gpse.SKETCH][name].numpy(), arr.numpy())  # type: ignore[index]
    assert dict(local[gpse.STATS]) == dict(queried[gpse.STATS])  # type: ignore[call-overload]
    assert fot_client.train_records(msg, instr, model, x, last_round_of_task=False) == {}
    q_msg, q_instr, q_model, q_x, _ = setup()
    assert fot_client.train_records(q_msg, q_instr, q_model, q_x, last_round_of_task=True) == {}


def test_query_reply_is_gpse_statistics_under_the_runs_options_and_the_clients_own_omega(
    message_identity: None,
) -> None:
    from flwr.app import Context, RecordDict

    from fedcl.client.instruction import parse, query_config
    from fedcl.config import compose, to_json
    from fedcl.data import build_stream
    from fedcl.fot import client as fot_client
    from fedcl.fot import protocol as gpse
    from fedcl.models import build_model
    from fedcl.records import array_record
    from fedcl.seeding import torch_generator
    from tests.conftest import synthetic_overrides

    # Prepare: non-default options, dropout in the model, client 1 on task 1, a subset of its samples, and
    # central DP (the client bounds its inputs and its sketch)
    cfg = compose(synthetic_overrides("strategy=fot", "strategy.sketch_factor=2", "strategy.gpse_max_samples=40",
                                      "strategy.gpse_dropout=true", "model.dropout=0.5", "privacy=dp_central"))
    stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    msg = gpse.gpse_query(array_record(dict(model.state_dict())), query_config(to_json(cfg), 4, 1, 1), {}, 1)
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    x = stream.client_data(1, 1)[0]
    # Execute
    reply = fot_client.handle(msg, ctx, parse(msg, ctx)).content
    want, stats = gpse_statistics(model, x, {}, sketch_factor=2, max_samples=40, batch_size=256, task_id=1,
                                  generator=torch_generator(cfg.seed, "omega", 1, 1), dropout=True, private=True)
    # Assert: bit for bit, so every option and the seed of Omega_i reach the client's statistics
    assert x.shape[0] > 40
    for name, y in want.items():
        assert y.shape[1] == 2 * y.shape[0]
        np.testing.assert_array_equal(reply[gpse.SKETCH][name].numpy(), y)  # type: ignore[index]
    assert dict(reply[gpse.STATS]) == stats  # type: ignore[call-overload]


def test_gpse_statistics_sketch_with_dropout_only_when_asked() -> None:
    # Prepare: a model whose head sees dropped-out inputs in training mode
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[8, 8], dropout=[0.2, 0.5])
    x = torch.randn(40, 6)

    def run(**kw: bool) -> np.ndarray:
        sketches, _ = gpse_statistics(model, x, {}, generator=torch.Generator().manual_seed(1), **kw)
        return sketches["head.heads.0"]

    # Execute / Assert: eval mode by default, the same as dropout=False; dropout=True differs
    default, off, on = run(), run(dropout=False), run(dropout=True)
    np.testing.assert_array_equal(default, off)
    assert not np.allclose(on, off)


def test_growth_record_of_a_wide_sketch_names_eps_r_bar_and_the_layers_input_dimension() -> None:
    # Prepare: a 4-dimensional layer input, sketched 4 x 8 (sketch_factor 2), all its energy in e0
    Y = np.zeros((4, 8), dtype=np.float32)
    Y[0, :] = 1.0
    state = FOTState(bases={}, eps=0.9)
    # Execute
    state.update_bases({"l": Y}, {"l": 10.0}, total_examples=10.0)
    # Assert: one direction of the layer's 4 (not of the sketch's 8 columns); the record's keys by name
    record = state.growth[-1]
    assert record["eps"] == 0.9 and set(record["layers"]) == {"l"}
    layer = record["layers"]["l"]
    assert (layer["dim"], layer["input_dim"], layer["share"]) == (1, 4, 0.25)
    assert layer["r_bar"] == 1.0 and layer["added"] == 1
