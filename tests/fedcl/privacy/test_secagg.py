"""SecAgg+ bridge: only the unmasked sum reaches the strategy; quantisation error; dropouts."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcl import keys
from fedcl.config import Config, compose, to_json
from fedcl.errors import ConfigError
from fedcl.privacy.client_mod import privacy_mod
from strategies.secagg import SecAggPlusGrid
from tests.conftest import synthetic_overrides
from tests.fedcl.privacy.inproc import InProcGrid, looks_masked, masked_vectors

NODES = [11, 12, 13, 14]
SHAPE = (5, 7)


def raw_update(node: int) -> np.ndarray:
    return np.random.default_rng(node).uniform(-0.5, 0.5, SHAPE).astype(np.float32)


def toy_app() -> ClientApp:
    app = ClientApp(mods=[privacy_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        w = msg.content[keys.ARRAYS]["w"].numpy()
        n = 10 * context.node_id % 7 + 10
        return Message(RecordDict({
            keys.ARRAYS: ArrayRecord({"w": Array(w + raw_update(context.node_id))}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n, keys.TRAIN_LOSS: 0.1 * context.node_id}),
        }), reply_to=msg)

    return app


def messages(cfg: Config) -> list[Message]:
    base = ArrayRecord({"w": Array(np.zeros(SHAPE, np.float32))})
    return [Message(RecordDict({keys.ARRAYS: base, keys.CONFIG: ConfigRecord(
        {keys.SERVER_ROUND: 1, keys.CLIENT_ID: i, keys.RUN_CONFIG_JSON: to_json(cfg)})}),
        dst_node_id=n, message_type=MessageType.TRAIN) for i, n in enumerate(NODES)]


def expected_mean(nodes: list[int]) -> np.ndarray:
    ns = np.array([10 * n % 7 + 10 for n in nodes], dtype=np.float64)
    return sum(w * raw_update(n) for w, n in zip(ns, nodes, strict=True)) / ns.sum()


@pytest.fixture
def cfg() -> Config:
    return compose(synthetic_overrides("privacy=secagg", "federation.num_clients=4"))


def test_strategy_gets_only_the_sum_within_quantisation(message_identity: None, cfg: Config) -> None:
    # Prepare
    inner = InProcGrid(toy_app(), NODES)
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 1000)
    # Execute
    replies = grid.send_and_receive(messages(cfg))
    # Assert: k identical replies holding the weighted average, within one quantisation level per client
    assert len(replies) == len(NODES)
    got = [r.content[keys.ARRAYS]["w"].numpy() for r in replies]
    assert all(np.array_equal(g, got[0]) for g in got)
    sa = cfg.privacy.secagg
    assert sa is not None
    bound = len(NODES) * 2 * sa.ranges.update / sa.quantization_range / (min(
        10 * n % 7 + 10 for n in NODES) / grid.max_weight)
    err = np.abs(got[0] - expected_mean(NODES)).max()
    assert err <= bound and err > 0  # quantised, not the raw floats
    # no reply the server side saw holds any client's raw update: masked vectors only
    for r in inner.seen:
        for rec in r.content.array_records.values():
            for arr in rec.values():
                assert not any(np.allclose(arr.numpy().ravel()[:5], raw_update(n).ravel()[:5]) for n in NODES)
    # each client's update travelled as one masked vector, uniform over the modulus, all different
    masked = masked_vectors(inner.seen)
    assert len(masked) == len(NODES)
    assert all(looks_masked(v, sa.quantization_range) for v in masked)
    assert len({v.tobytes() for v in masked}) == len(NODES)


def test_dropout_mid_protocol_does_not_break_the_round(message_identity: None, cfg: Config) -> None:
    # Prepare: node 13 answers the key stages but its masked vector is lost (stage 2 = third call)
    inner = InProcGrid(toy_app(), NODES)
    inner.drop_rule = lambda call, node: call == 3 and node == 13
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 1000)
    # Execute
    replies = grid.send_and_receive(messages(cfg))
    # Assert: the others' average, unmasked with the dropped node's reconstructed key
    alive = [n for n in NODES if n != 13]
    assert len(replies) == len(alive) and grid.last_dropped == 1
    err = np.abs(replies[0].content[keys.ARRAYS]["w"].numpy() - expected_mean(alive)).max()
    assert err < 1e-3


def test_one_node_playing_two_clients_is_refused(message_identity: None, cfg: Config) -> None:
    # Prepare
    grid = SecAggPlusGrid(InProcGrid(toy_app(), NODES), cfg.privacy.secagg, 1000)
    msgs = messages(cfg)
    msgs[1].metadata.__dict__["_dst_node_id"] = NODES[0]
    # Execute / Assert
    with pytest.raises(ConfigError, match="one SuperNode per client"):
        grid.send_and_receive(msgs)


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean", "krum"])
def test_robust_aggregator_is_refused_under_secure_aggregation(aggregator: str) -> None:
    # Prepare / Execute / Assert: a rule that ranks individual updates cannot run on their sum
    with pytest.raises(ConfigError, match="strategy.aggregator.*secure aggregation hides"):
        compose(synthetic_overrides("privacy=secagg", "federation.num_clients=5", f"strategy.aggregator={aggregator}"))
    # the same aggregator without secure aggregation is fine
    assert compose(synthetic_overrides("federation.num_clients=5",
                                       f"strategy.aggregator={aggregator}")).strategy.aggregator == aggregator
