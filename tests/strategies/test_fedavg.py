"""FCLFedAvg with constructed replies: no Ray, no SuperLink."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedcl import keys
from tests.strategies.helpers import FakeGrid, make_strategy


def reply_to(msg: Message, weight: float, n: int, extra: bool = False) -> Message:
    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord({"w": Array(np.full((2, 2), weight, dtype=np.float32))}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n, keys.TRAIN_LOSS: weight}),
        }
    )
    if extra:
        content["extra"] = ArrayRecord({"s": Array(np.ones(3, dtype=np.float32))})
    return Message(content, reply_to=msg)


def test_configure_train_sends_task_and_client_ids(message_identity: None) -> None:
    # Prepare
    strategy = make_strategy()
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    # Execute: round 3 is the first round of task 1 (2 rounds per task)
    msgs = list(strategy.configure_train(3, arrays, ConfigRecord(), FakeGrid([11, 7])))
    # Assert
    assert len(msgs) == 3
    cfgs = [m.content[keys.CONFIG] for m in msgs]
    assert [c[keys.CLIENT_ID] for c in cfgs] == [0, 1, 2]
    assert all(c[keys.TASK_ID] == 1 and c[keys.TASK_ROUND] == 0 for c in cfgs)
    assert all(c[keys.LAST_ROUND_OF_TASK] is False for c in cfgs)
    assert [m.metadata.dst_node_id for m in msgs] == [7, 11, 7]  # client c -> sorted nodes[c % 2]
    assert all(m.metadata.message_type == MessageType.TRAIN for m in msgs)
    assert keys.PROXIMAL_MU not in cfgs[0]


def test_fedprox_sends_proximal_mu(message_identity: None) -> None:
    strategy = make_strategy("strategy=fedprox")
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    msgs = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid([1])))
    assert msgs[0].content[keys.CONFIG][keys.PROXIMAL_MU] == 0.01


def test_client_sampling_is_seeded_by_round(message_identity: None) -> None:
    strategy = make_strategy("federation.num_clients=10", "federation.clients_per_round=4")
    a, b = strategy.sample_clients(3), strategy.sample_clients(3)
    assert a == b and len(a) == 4
    assert any(strategy.sample_clients(r) != a for r in (1, 2, 4))


def test_aggregate_weighted_mean_and_extras_stripped(message_identity: None) -> None:
    # Prepare
    strategy = make_strategy()
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    msgs = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid([1, 2, 3])))
    replies = [reply_to(msgs[0], 1.0, 10, extra=True), reply_to(msgs[1], 4.0, 30, extra=True)]
    seen: list[list[dict]] = []
    strategy.aggregate_extras = lambda rnd, arr, rep, extras: (seen.append(extras), arr)[1]  # type: ignore[method-assign]
    # Execute
    new, metrics = strategy.aggregate_train(1, replies)
    # Assert: (10*1 + 30*4) / 40 = 3.25
    assert new is not None and metrics is not None
    np.testing.assert_allclose(new["w"].numpy(), np.full((2, 2), 3.25))
    assert abs(float(metrics[keys.TRAIN_LOSS]) - 3.25) < 1e-6
    assert len(seen[0]) == 2 and "extra" in seen[0][0]
    assert strategy.bytes_up > 0 and strategy.bytes_down > 0
