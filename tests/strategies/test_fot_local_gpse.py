"""FOT's official GPSE (``strategy.gpse_model=local``) with constructed train replies: sketches ride on the
last round's replies, are summed per task, checkpointed while pending, and grow the bases at the task's end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.errors import RoundError
from fedcl.fot import protocol as gpse
from strategies.fot import FOT, LocalSums
from tests.strategies.test_fot import D_IN, D_OUT, GPSEGrid, arrays_of, make_fot

W0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))


def _sketch(basis: np.ndarray, seed: int) -> np.ndarray:
    """A client's d x d sketch of layer inputs that live in span(basis)."""
    rng = np.random.default_rng(seed)
    A = basis @ rng.normal(size=(basis.shape[1], 30))
    return (A @ rng.normal(size=(30, D_IN))).astype(np.float32)


def _replies(strategy: FOT, server_round: int, sketches: list[np.ndarray | None]) -> list[Message]:
    """The round's train replies; client i's carries ``sketches[i]`` as its GPSE records (none if ``None``)."""
    msgs = list(strategy.configure_train(server_round, W0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2])))
    out = []
    for msg, y in zip(msgs, sketches, strict=True):
        content = RecordDict({keys.ARRAYS: W0, keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10})})
        if y is not None:
            content[gpse.SKETCH] = ArrayRecord({"fc": Array(y)})
            content[gpse.STATS] = MetricRecord({keys.NUM_EXAMPLES: 30, "fc/ratio-weighted": 30.0})
        out.append(Message(content, reply_to=msg))
    return out


def _basis_projector(strategy: FOT) -> np.ndarray:
    U = strategy.fot.bases["fc"].numpy()
    return U @ U.T


def test_last_round_sketches_grow_the_same_basis_as_queried_ones(message_identity: None) -> None:
    # Prepare: the three clients' inputs live in span(e0, e1); the query mode gets the same sketches
    basis = np.eye(D_IN)[:, :2]
    local = make_fot("strategy.gpse_model=local")
    queried = make_fot()
    sketches = [_sketch(basis, i) for i in range(3)]
    # Execute: round 2 is task 0's last (2 rounds per task)
    sent = list(local.configure_train(2, W0, ConfigRecord(), GPSEGrid(basis)))
    local.aggregate_train(2, _replies(local, 2, list(sketches)))
    local.on_task_end(2, 0, W0, GPSEGrid(basis))
    queried.on_task_end(2, 0, W0, GPSEGrid(basis))
    # Assert: the last round's messages carried the (empty) bases; the basis is span(e0, e1) in both modes
    assert all(gpse.BASES in m.content for m in sent)
    assert local.fot.bases["fc"].shape == (D_IN, 2)
    np.testing.assert_allclose(_basis_projector(local), basis @ basis.T, atol=1e-5)
    np.testing.assert_allclose(_basis_projector(local), _basis_projector(queried), atol=1e-5)
    assert local.sketch_bytes >= 3 * D_IN * D_IN * 4


def test_a_non_finite_or_incomplete_sketch_is_rejected_and_the_rest_summed(
    message_identity: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: client 0 sends NaN (its whole reply is refused), client 1 a sketch without its statistics
    strategy = make_fot("strategy.gpse_model=local")
    nan = np.full((D_IN, D_IN), np.nan, dtype=np.float32)
    span = np.eye(D_IN)[:, :1]
    replies = _replies(strategy, 2, [nan, _sketch(span, 1), _sketch(span, 2)])
    del replies[1].content[gpse.STATS]
    # Execute
    strategy.aggregate_train(2, replies)
    strategy.on_task_end(2, 0, W0, GPSEGrid(np.eye(D_IN)[:, :2]))
    # Assert: only client 2's sketch counted
    assert list(strategy.round_faults.rejected) == [0]
    assert strategy.gpse_faults.rejected == {1: f"record '{gpse.STATS}' missing or not a MetricRecord"}
    assert f"gpse: client 1 rejected: record '{gpse.STATS}' missing or not a MetricRecord" in caplog.messages
    np.testing.assert_allclose(_basis_projector(strategy), span @ span.T, atol=1e-5)


def test_a_sketch_layout_unlike_the_others_is_rejected(message_identity: None) -> None:
    strategy = make_fot("strategy.gpse_model=local")
    span = np.eye(D_IN)[:, :1]
    odd = np.ones((D_IN + 1, D_IN + 1), dtype=np.float32)
    strategy.aggregate_train(2, _replies(strategy, 2, [_sketch(span, 0), odd, _sketch(span, 1)]))
    assert strategy.gpse_faults.rejected == {1: "sketch names/shapes differ from the other clients'"}
    assert strategy._pending[0].clients == 2


def test_replies_without_sketches_leave_nothing_pending_and_task_end_refuses(message_identity: None) -> None:
    strategy = make_fot("strategy.gpse_model=local")
    strategy.aggregate_train(2, _replies(strategy, 2, [None, None, None]))
    assert strategy._pending == {} and strategy.gpse_faults.rejected == {}
    with pytest.raises(RoundError) as info:
        strategy.on_task_end(2, 0, W0, GPSEGrid(np.eye(D_IN)[:, :2]))
    assert str(info.value) == ("FOT: no client of the last round of task 0 sent a sound GPSE sketch "
                               "(strategy.gpse_model=local); the newest checkpoint is intact: fix the clients "
                               "and continue with resume=<run folder>")


def test_pending_sums_survive_a_checkpoint_between_the_last_round_and_the_task_end(
    message_identity: None,
) -> None:
    # Prepare: the last round's sketches are summed, then the server stops before the task's end
    basis = np.eye(D_IN)[:, :3]
    strategy = make_fot("strategy.gpse_model=local")
    strategy.aggregate_train(2, _replies(strategy, 2, [_sketch(basis, i) for i in range(3)]))
    pending = strategy._pending[0]
    # Execute: resume from the checkpoint, then end the task in both
    restored = make_fot("strategy.gpse_model=local")
    restored.load_state_dict(strategy.state_dict())
    strategy.on_task_end(2, 0, W0, GPSEGrid(basis))
    restored.on_task_end(2, 0, W0, GPSEGrid(basis))
    # Assert: the restored sums are the pending ones, bit for bit, and so are the bases
    assert pending.clients == 3 and pending.stats == {keys.NUM_EXAMPLES: 90.0, "fc/ratio-weighted": 90.0}
    assert torch.equal(restored.fot.bases["fc"], strategy.fot.bases["fc"])


def test_local_sums_add_in_float64_and_round_trip() -> None:
    # Prepare
    sums = LocalSums()
    y = np.full((2, 2), 0.1, dtype=np.float32)
    records = [(ArrayRecord({"fc": Array(y)}), MetricRecord({keys.NUM_EXAMPLES: 3, "fc/ratio-weighted": 1.5}))] * 2
    # Execute
    sums.add(records)
    sums.add(records[:1])
    again = LocalSums.from_state(sums.state_dict())
    # Assert
    assert sums.sketches["fc"].dtype == np.float64
    np.testing.assert_array_equal(sums.sketches["fc"], 3 * y.astype(np.float64))
    assert sums.stats == {keys.NUM_EXAMPLES: 9.0, "fc/ratio-weighted": 4.5} and sums.clients == 3
    assert sums.nbytes == 3 * records[0][0].count_bytes()
    assert again.state_dict().keys() == sums.state_dict().keys()
    np.testing.assert_array_equal(again.sketches["fc"], sums.sketches["fc"])
    assert (again.stats, again.nbytes, again.clients) == (sums.stats, sums.nbytes, sums.clients)


def test_the_last_rounds_bases_are_counted_in_the_downlink(message_identity: None) -> None:
    # Prepare: a basis after task 0; round 4 is task 1's last round
    local, queried = make_fot("strategy.gpse_model=local"), make_fot()
    for s in (local, queried):
        s.fot.bases = {"fc": torch.eye(D_IN)[:, :2].contiguous()}
    # Execute
    sent = list(local.configure_train(4, W0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2])))
    queried.configure_train(4, W0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2]))
    # Assert: every message's bases on top of FedAvg's traffic
    extra = sum(m.content[gpse.BASES].count_bytes() for m in sent)  # type: ignore[union-attr]
    assert len(sent) == 3 and extra > 0 and local.bytes_down - queried.bytes_down == extra


def test_bases_and_occupancy_reports_before_and_after_a_task_end(message_identity: None) -> None:
    strategy = make_fot()
    assert strategy.subspace_bases() == {} and strategy.occupancy() == {}
    strategy.on_task_end(2, 0, W0, GPSEGrid(np.eye(D_IN)[:, :2]))
    bases = strategy.subspace_bases()
    assert list(bases) == ["fc"] and bases is not strategy.fot.bases
    assert torch.equal(bases["fc"], strategy.fot.bases["fc"])
    assert strategy.occupancy()["fc"]["dim"] == 2 and strategy.occupancy()["fc"]["input_dim"] == D_IN


def test_local_sketches_under_central_dp_are_released_like_queried_ones(message_identity: None) -> None:
    # Prepare: the same three sketches, sent on the last round's replies or answered to the task-end query
    basis = np.eye(D_IN)[:, :2]
    dp = ("privacy=dp_central", "privacy.dp.gpse_noise_multiplier=2.0")
    local, queried = make_fot("strategy.gpse_model=local", *dp), make_fot(*dp)
    # Execute
    local.aggregate_train(2, _replies(local, 2, [_sketch(basis, i) for i in range(3)]))
    local.on_task_end(2, 0, W0, GPSEGrid(basis))
    queried.on_task_end(2, 0, W0, GPSEGrid(basis))
    # Assert: one 'gpse' release of the three clients, and the same noise (seeded by the task) on the same sums
    [release] = [r for r in local.averager.accountant.ledger if r.kind == "gpse"]  # (the round's own is "train")
    assert (release.noise_multiplier, release.sample_size) == (2.0, 3)
    U, V = local.fot.bases.get("fc"), queried.fot.bases.get("fc")
    assert (U is None) == (V is None) and (U is None or torch.equal(U, V))
    assert local.fot.growth == queried.fot.growth
    # the same sums released at the end of task 1 draw other noise (its seed names the task)
    later = make_fot("strategy.gpse_model=local", *dp)
    later.aggregate_train(4, _replies(later, 4, [_sketch(basis, i) for i in range(3)]))
    later.on_task_end(4, 1, W0, GPSEGrid(basis))
    assert later.fot.growth[-1]["layers"]["fc"]["r_bar"] != local.fot.growth[-1]["layers"]["fc"]["r_bar"]
