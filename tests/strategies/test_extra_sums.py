"""FCLFedAvg's "sum-*" records: summed over the round's replies, broadcast next round, checkpointed."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from fedcl import sums
from strategies.extra_sums import ExtraSums
from tests.strategies.helpers import FakeGrid, make_strategy
from tests.strategies.test_fedavg import reply_to

NAME = sums.PREFIX + "fedcurv"


def _with_sum(reply: Message, u: float, v: float) -> Message:
    reply.content[NAME] = ArrayRecord(
        {"u/w": Array(np.full((2, 2), u, dtype=np.float32)), "v/w": Array(np.full(3, v, dtype=np.float32))}
    )
    return reply


def test_sums_of_a_round_reach_every_client_next_round(message_identity: None) -> None:
    # Prepare: 3 clients; two send sum records, one does not
    strategy = make_strategy()
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    msgs = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid([1, 2, 3])))
    assert all(NAME not in m.content for m in msgs)  # nothing to send before any sums exist
    replies = [_with_sum(reply_to(msgs[0], 1.0, 10), 1.0, 2.0), _with_sum(reply_to(msgs[1], 3.0, 10), 0.5, -4.0),
               reply_to(msgs[2], 2.0, 10)]
    # Execute
    new, _ = strategy.aggregate_train(1, replies)
    assert new is not None
    nxt = list(strategy.configure_train(2, new, ConfigRecord(), FakeGrid([1, 2, 3])))
    # Assert: the model is the plain weighted mean (sum records do not enter it) ...
    np.testing.assert_allclose(new["w"].numpy(), np.full((2, 2), 2.0))
    # ... and every client of round 2 gets the element-wise sums and where they came from
    for m in nxt:
        rec = m.content[NAME]
        np.testing.assert_allclose(rec["u/w"].numpy(), np.full((2, 2), 1.5))
        np.testing.assert_allclose(rec["v/w"].numpy(), np.full(3, -2.0))
        meta = m.content[sums.META]
        assert meta[sums.META_ROUND] == 1 and meta[sums.META_CLIENTS] == 2


def test_sums_survive_a_checkpoint_round_trip(message_identity: None) -> None:
    # Prepare
    strategy = make_strategy()
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    msgs = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid([1])))
    strategy.aggregate_train(1, [_with_sum(reply_to(msgs[0], 1.0, 10), 2.0, 3.0)])
    # Execute
    restored = make_strategy()
    restored.load_state_dict(strategy.state_dict())
    # Assert
    got, want = restored.train_payload(2), strategy.train_payload(2)
    assert got.keys() == want.keys() == {NAME, sums.META}
    np.testing.assert_array_equal(got[NAME]["u/w"].numpy(), want[NAME]["u/w"].numpy())
    assert got[sums.META][sums.META_ROUND] == 1


def test_a_round_without_sum_records_keeps_the_last_sums() -> None:
    # Prepare
    sums = ExtraSums()
    rec = ArrayRecord({"a": Array(np.ones(2, dtype=np.float32))})
    sums.add_round(1, [{NAME: rec}, {NAME: rec}])
    # Execute
    sums.add_round(2, [{"other": rec}])
    # Assert
    assert sums.round == 1 and sums.clients == 2
    np.testing.assert_array_equal(sums.sums[NAME]["a"], np.full(2, 2.0))
