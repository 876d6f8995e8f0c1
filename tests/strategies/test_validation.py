"""Reply validation, robust aggregation and round retries on constructed Messages (no Ray)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)

from fedcl import keys
from fedcl.errors import ConfigError, RoundError
from fedcl.fot import protocol as fot_protocol
from strategies.fedavg import FCLFedAvg
from strategies.robust import robust_aggregate
from strategies.server.rounds import send_train_round
from strategies.validation import ReplyValidator, check_train_reply
from tests.strategies.helpers import FakeGrid, make_strategy

GLOBAL = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32)), "b": Array(np.zeros(2, dtype=np.float32))})


def content(w: Any = 1.0, n: Any = 10, shape: tuple[int, ...] = (2, 2), dtype: Any = np.float32,
            drop: str | None = None) -> RecordDict:
    arrays = {"w": Array(np.full(shape, w, dtype=dtype)), "b": Array(np.full(2, w, dtype=np.float32))}
    rd = RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n})})
    if drop:
        del rd[drop]
    return rd


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (content(np.nan), "NaN/Inf"),
        (content(np.inf), "NaN/Inf"),
        (content(shape=(3, 2)), "shape"),
        (content(dtype=np.float64), "dtype"),
        (content(drop=keys.ARRAYS), "record 'arrays'"),
        (content(drop=keys.METRICS), "record 'metrics'"),
        (content(n=0), "outside"),
        (content(n=-5), "outside"),
        (content(n=2.5), "not an integer"),
        (content(n=10**12), "outside"),
    ],
)
def test_bad_train_reply_is_rejected_with_reason(reply: RecordDict, reason: str) -> None:
    assert reason in (check_train_reply(reply, GLOBAL, keys.NUM_EXAMPLES) or "")


def test_sound_reply_passes_and_missing_or_extra_array_fails() -> None:
    assert check_train_reply(content(), GLOBAL, keys.NUM_EXAMPLES) is None
    assert check_train_reply(content(n=10.0), GLOBAL, keys.NUM_EXAMPLES) is None  # integral float is a count
    rd = content()
    rd[keys.ARRAYS] = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    assert "missing" in (check_train_reply(rd, GLOBAL, keys.NUM_EXAMPLES) or "")
    rd[keys.ARRAYS] = ArrayRecord({**{k: v for k, v in content()[keys.ARRAYS].items()},  # type: ignore[union-attr]
                                   "x": Array(np.zeros(1, dtype=np.float32))})
    assert "unexpected" in (check_train_reply(rd, GLOBAL, keys.NUM_EXAMPLES) or "")
    rd = content()
    rd["payload"] = ArrayRecord({"s": Array(np.array([np.nan], dtype=np.float32))})
    assert "payload" in (check_train_reply(rd, GLOBAL, keys.NUM_EXAMPLES) or "")


def reply(msg: Message, rd: RecordDict) -> Message:
    return Message(rd, reply_to=msg)


def error_reply(msg: Message) -> Message:
    return Message(Error(code=0, reason="client raised"), reply_to=msg)


def sent_messages(strategy: FCLFedAvg, nodes: int = 4) -> list[Message]:
    arrays = ArrayRecord({k: Array(v.numpy()) for k, v in GLOBAL.items()})
    msgs = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid(list(range(1, nodes + 1)))))
    for i, m in enumerate(msgs):  # what the grid does when it pushes them
        m.metadata.__dict__["_message_id"] = f"id{i}"
    return msgs


def test_aggregate_drops_nan_error_and_missing_replies(message_identity: None) -> None:
    # Prepare: 4 clients; 0 and 2 sound, 1 NaN, 3 an error reply, and replies arrive out of order
    strategy = make_strategy("federation.num_clients=4")
    msgs = sent_messages(strategy)
    replies = [reply(msgs[2], content(3.0, 30)), reply(msgs[1], content(np.nan, 10)), error_reply(msgs[3]),
               reply(msgs[0], content(1.0, 10))]
    # Execute
    arrays, _ = strategy.aggregate_train(1, replies)
    # Assert: (10*1 + 30*3) / 40 = 2.5; the global model never takes the NaN reply in
    assert arrays is not None
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.5))
    faults = strategy.round_faults
    assert sorted(faults.accepted) == [0, 2]
    assert list(faults.rejected) == [1] and "NaN" in faults.rejected[1]
    assert list(faults.failed) == [3] and "client raised" in faults.failed[3]
    row = faults.as_row()
    assert row["failed_clients"] == 1 and row["rejected_clients"] == 1 and row["rejected_client_ids"] == [1]


def test_all_replies_bad_keeps_global_model(message_identity: None) -> None:
    strategy = make_strategy()
    msgs = sent_messages(strategy)
    arrays, metrics = strategy.aggregate_train(1, [reply(m, content(np.inf)) for m in msgs])
    assert arrays is None and metrics is None
    assert len(strategy.round_faults.rejected) == 3


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean", "krum"])
def test_one_poisoned_client_does_not_move_robust_aggregate(aggregator: str) -> None:
    # Prepare: 5 honest clients near 1.0, one poisoned with 1e6 and a forged num-examples
    honest = [content(1.0 + 0.01 * i, 10) for i in range(5)]
    poisoned = content(1e6, 10**8)
    # Execute
    out = robust_aggregate([*honest, poisoned], aggregator, trim_beta=0.2, krum_f=1)
    mean = robust_aggregate([*honest], "median")
    # Assert: within the honest range (the plain mean would be ~1.7e5)
    w = out["w"].numpy()
    assert w.dtype == np.float32
    assert np.all((w >= 1.0) & (w <= 1.04)), w
    assert abs(float(w.mean()) - float(mean["w"].numpy().mean())) < 0.03


def test_fedavg_with_median_aggregator_ignores_poisoned_reply(message_identity: None) -> None:
    strategy = make_strategy("federation.num_clients=5", "strategy.aggregator=median")
    msgs = sent_messages(strategy, nodes=5)
    replies = [reply(m, content(1e6 if i == 4 else 2.0, 10)) for i, m in enumerate(msgs)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.0))


def test_unknown_aggregator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="strategy.aggregator"):
        robust_aggregate([content()], "mode")


def gpse(sketch_shape: tuple[int, int] = (4, 4), value: float = 1.0) -> RecordDict:
    return RecordDict({
        fot_protocol.SKETCH: ArrayRecord({"body.1": Array(np.full(sketch_shape, value, dtype=np.float32))}),
        fot_protocol.STATS: MetricRecord({keys.NUM_EXAMPLES: 10.0, "body.1/ratio-weighted": 5.0}),
    })


def test_gpse_replies_nan_and_odd_shapes_rejected(message_identity: None) -> None:
    strategy = make_strategy("federation.num_clients=4")
    msgs = sent_messages(strategy)
    replies = [reply(msgs[0], gpse()), reply(msgs[1], gpse(value=np.nan)), reply(msgs[2], gpse()),
               reply(msgs[3], gpse((5, 4)))]
    good, faults = make_strategy("strategy=fot", "federation.num_clients=4")._split_gpse(msgs, replies)
    assert len(good) == 2 and sorted(faults.accepted) == [0, 2]
    assert sorted(faults.rejected) == [1, 3]
    assert fot_protocol.check_reply(RecordDict({}), ReplyValidator().count_reason) is not None


class ScriptedGrid(FakeGrid):
    """Answers each try from a script: tries[k](message) -> reply or None (lost)."""

    def __init__(self, nodes: list[int], tries: list[Any]) -> None:
        super().__init__(nodes)
        self.tries, self.attempts_seen = tries, []  # type: ignore[var-annotated]

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        k = len(self.attempts_seen)
        self.attempts_seen.append([m.content[keys.CONFIG][keys.ATTEMPT] for m in messages])
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"t{k}-{i}"
        out = [self.tries[k](m) for m in messages]
        return [r for r in out if r is not None]


def test_round_below_min_replies_is_retried_then_succeeds(message_identity: None) -> None:
    # Prepare: first try every client crashes, second try all answer
    strategy = make_strategy("federation.min_replies=2")
    grid = ScriptedGrid([1, 2, 3], [error_reply, lambda m: reply(m, content(1.0))])
    # Execute
    msgs, replies, attempts = send_train_round(strategy, grid, 1, GLOBAL, strategy.cfg.federation)
    # Assert
    assert attempts == 2 and grid.attempts_seen == [[0, 0, 0], [1, 1, 1]]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and len(strategy.round_faults.accepted) == 3


def test_round_failing_every_try_stops_with_round_error(message_identity: None) -> None:
    strategy = make_strategy("federation.min_replies=2", "federation.round_retries=2")
    # one client answers with NaN, the others are lost (time out)
    grid = ScriptedGrid([1, 2, 3], [lambda m: reply(m, content(np.nan)) if m.content[keys.CONFIG][
        keys.CLIENT_ID] == 0 else None] * 3)
    with pytest.raises(RoundError, match="min_replies=2") as info:
        send_train_round(strategy, grid, 1, GLOBAL, strategy.cfg.federation)
    assert len(grid.attempts_seen) == 3
    assert "NaN" in str(info.value) and "no reply" in str(info.value)
