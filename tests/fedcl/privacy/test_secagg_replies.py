"""SecAgg+ cannot misplace, hide or bias a value silently: layouts, NaN/Inf, ranges, overflow (issue 17, 1/2/4/5)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcl import keys
from fedcl.config import Config, compose
from fedcl.errors import ClientReplyError, ConfigError
from fedcl.privacy.client_mod import privacy_mod
from fedcl.privacy.secagg_protocol import unvectorize, vectorize
from fedcl.records import non_finite_reason
from strategies.secagg import SecAggPlusGrid
from tests.conftest import synthetic_overrides
from tests.fedcl.privacy.inproc import InProcGrid
from tests.fedcl.privacy.test_secagg import NODES, expected_mean, messages, raw_update

Reply = Callable[[int, np.ndarray], RecordDict]


def weight(node: int) -> int:
    return 10 * node % 7 + 10


def plain(node: int, w: np.ndarray) -> RecordDict:
    return RecordDict({
        keys.ARRAYS: ArrayRecord({"w": Array(w + raw_update(node))}),
        keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: weight(node), keys.TRAIN_LOSS: 0.1 * node}),
    })


def app_of(reply: Reply) -> ClientApp:
    app = ClientApp(mods=[privacy_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return Message(reply(context.node_id, msg.content[keys.ARRAYS]["w"].numpy()), reply_to=msg)

    return app


@pytest.fixture
def cfg() -> Config:
    return compose(synthetic_overrides("privacy=secagg", "federation.num_clients=4"))


def run(cfg: Config, reply: Reply) -> tuple[SecAggPlusGrid, list[Message]]:
    assert cfg.privacy.secagg is not None
    # max_weight 20 (the clients hold 10..15 examples): weights near 1 keep the metrics' quantisation error small
    grid = SecAggPlusGrid(InProcGrid(app_of(reply), NODES), cfg.privacy.secagg, 20)
    return grid, grid.send_and_receive(messages(cfg))


# ---- item 1: one layout, whatever order the keys were written in ------------------------------
def test_metric_key_order_does_not_move_values(message_identity: None, cfg: Config) -> None:
    # Prepare: every client reports the same three metrics, odd nodes in reverse insertion order
    def reply(node: int, w: np.ndarray) -> RecordDict:
        items = [(keys.NUM_EXAMPLES, weight(node)), (keys.TRAIN_LOSS, 0.1 * node), ("aux", 100.0 + node)]
        content = plain(node, w)
        content[keys.METRICS] = MetricRecord(dict(items if node % 2 == 0 else items[::-1]))
        return content

    # Execute
    _, replies = run(cfg, reply)
    # Assert: each metric is the clients' weighted mean of that metric (within quantisation: 0.005 per client)
    ns = np.array([weight(n) for n in NODES], dtype=np.float64)
    metrics = replies[0].content[keys.METRICS]
    assert metrics[keys.TRAIN_LOSS] == pytest.approx(float(ns @ (0.1 * np.array(NODES)) / ns.sum()), abs=0.03)
    assert metrics["aux"] == pytest.approx(float(ns @ (100.0 + np.array(NODES)) / ns.sum()), abs=0.03)


def test_a_metric_only_some_clients_report_stops_the_round_naming_client_and_key(
    message_identity: None, cfg: Config
) -> None:
    # Prepare: node 13 (client 2) reports A-GEM's counter, the others do not
    def reply(node: int, w: np.ndarray) -> RecordDict:
        content = plain(node, w)
        if node == 13:
            content[keys.METRICS]["agem-projected"] = 3.0
        return content

    # Execute / Assert
    with pytest.raises(ClientReplyError, match=r"client 2's reply differs from client 0's.*extra keys \['agem-proj"):
        run(cfg, reply)


# ---- item 2: NaN / Inf refused before masking ---------------------------------------------
def test_a_nan_reply_is_rejected_before_masking_and_the_round_goes_on(message_identity: None, cfg: Config) -> None:
    # Prepare: node 12 (client 1) diverged
    def reply(node: int, w: np.ndarray) -> RecordDict:
        content = plain(node, w)
        if node == 12:
            bad = w + raw_update(node)
            bad[0, 0] = np.nan
            content[keys.ARRAYS] = ArrayRecord({"w": Array(bad)})
        return content

    # Execute
    grid, replies = run(cfg, reply)
    # Assert: client 1 rejected with the validator's reason text, the others averaged (finite, right)
    reason = non_finite_reason(plain(12, np.full((5, 7), np.nan, np.float32)))
    assert grid.last_rejected == {1: reason} and grid.round_metrics(1, ArrayRecord())["secagg_rejected"] == 1
    alive = [n for n in NODES if n != 12]
    assert len(replies) == len(alive)
    assert np.abs(replies[0].content[keys.ARRAYS]["w"].numpy() - expected_mean(alive)).max() < 1e-3


def test_vectorize_refuses_inf_in_a_metric(cfg: Config) -> None:
    content = plain(11, np.zeros((5, 7), np.float32))
    content[keys.METRICS][keys.TRAIN_LOSS] = float("inf")
    assert cfg.privacy.secagg is not None
    with pytest.raises(ClientReplyError, match="NaN/Inf in record 'metrics'"):
        vectorize(content, None, cfg.privacy.secagg, 1000.0, dp=False)


# ---- item 4: a value outside its range is an error naming the range ---------------------------
def test_a_sketch_outside_its_range_is_an_error_naming_the_range(message_identity: None, cfg: Config) -> None:
    # Prepare: one client's extra array payload (range privacy.secagg.ranges.sketch = 1000) reaches 5000
    def reply(node: int, w: np.ndarray) -> RecordDict:
        content = plain(node, w)
        content["sketch"] = ArrayRecord({"y": Array(np.full(3, 5000.0 if node == 14 else 1.0, np.float32))})
        return content

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"privacy.secagg.ranges.sketch.*1 of 4 clients had sketch values"):
        run(cfg, reply)


def test_an_update_outside_its_range_is_an_error(message_identity: None) -> None:
    cfg = compose(synthetic_overrides("privacy=secagg", "federation.num_clients=4",
                                      "privacy.secagg.ranges.update=0.001"))
    with pytest.raises(ConfigError, match=r"privacy.secagg.ranges.update.*4 of 4 clients"):
        run(cfg, plain)


# ---- item 5: the modular sum must not wrap ------------------------------------------------
def test_a_secure_sum_that_would_wrap_the_modulus_is_refused_before_the_protocol(
    message_identity: None, cfg: Config
) -> None:
    # Prepare: 4 clients x 2^22 levels = 2^24 = the modulus (e.g. a GPSE query larger than a round)
    assert cfg.privacy.secagg is not None
    secagg = cfg.privacy.secagg.model_copy(update={"modulus_range": 2**24})
    inner = InProcGrid(app_of(plain), NODES)
    grid = SecAggPlusGrid(inner, secagg, 1000)
    # Execute / Assert: refused before any protocol message is sent
    with pytest.raises(ConfigError, match="privacy.secagg.modulus_range.*4 x quantization_range"):
        grid.send_and_receive(messages(cfg))
    assert inner.calls == 0


def test_the_unmasked_model_keeps_the_sent_models_array_order(cfg: Config) -> None:
    # Prepare: a model whose state_dict order is not alphabetical (Flower's clipping mods compare the order)
    base = ArrayRecord({"z": Array(np.zeros(3, np.float32)), "a": Array(np.zeros(2, np.float32))})
    content = RecordDict({keys.ARRAYS: ArrayRecord({"z": Array(np.full(3, 0.1, np.float32)),
                                                    "a": Array(np.full(2, 0.2, np.float32))}),
                          keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10})})
    assert cfg.privacy.secagg is not None
    blocks, layout = vectorize(content, base, cfg.privacy.secagg, 10.0, dp=False)
    # Execute
    out = unvectorize(blocks, 1, layout, base)
    # Assert: the layout is sorted, the model is not reordered, each value in its own place
    assert [r["names"] for r in layout["records"] if r["kind"] == "update"] == [["a", "z"]]
    assert list(out[keys.ARRAYS].keys()) == ["z", "a"]
    assert np.allclose(out[keys.ARRAYS]["z"].numpy(), 0.1) and np.allclose(out[keys.ARRAYS]["a"].numpy(), 0.2)


# ---- item 7: a retried round never reveals two sums over different clients --------------------
@pytest.mark.parametrize(("min_replies", "revealed"), [(4, False), (3, True)])
def test_a_sum_below_min_replies_is_not_unmasked(
    message_identity: None, cfg: Config, min_replies: int, revealed: bool
) -> None:
    # Prepare: node 13's masked vector is lost (stage 2 = third call): 3 of 4 clients in the sum
    assert cfg.privacy.secagg is not None
    inner = InProcGrid(app_of(plain), NODES)
    inner.drop_rule = lambda call, node: call == 3 and node == 13
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 20, min_replies=min_replies)
    # Execute
    replies = grid.send_and_receive(messages(cfg))
    # Assert: below min_replies the unmask stage never runs (no sum: the round loop retries with a fresh one)
    assert (len(replies) == 3) == revealed and (inner.calls == 4) == revealed
    # the retry (nobody drops now) runs the protocol from its setup stage again and sums all 4
    assert len(grid.send_and_receive(messages(cfg))) == 4


# ---- item 6: a dropout in any stage of the protocol ---------------------------------------
@pytest.mark.parametrize(("stage_call", "in_sum"), [(1, 3), (2, 3), (3, 3), (4, 4)])
def test_a_dropout_in_any_stage_keeps_the_round(
    message_identity: None, cfg: Config, stage_call: int, in_sum: int
) -> None:
    # Prepare: node 13 vanishes in setup (1), key sharing (2), masked vectors (3) or unmasking (4)
    assert cfg.privacy.secagg is not None
    inner = InProcGrid(app_of(plain), NODES)
    inner.drop_rule = lambda call, node: call == stage_call and node == 13
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 20)
    # Execute
    replies = grid.send_and_receive(messages(cfg))
    # Assert: the sum of the clients whose masked vectors arrived (after unmasking, 13's is in it)
    alive = [n for n in NODES if n != 13] if in_sum == 3 else NODES
    assert len(replies) == in_sum
    assert np.abs(replies[0].content[keys.ARRAYS]["w"].numpy() - expected_mean(alive)).max() < 1e-3


def test_dropouts_in_two_stages_remove_only_the_masks_that_were_added(message_identity: None) -> None:
    # Prepare: threshold 2 of 4; node 13 vanishes in key sharing, node 12 after key sharing
    cfg = compose(synthetic_overrides("privacy=secagg", "federation.num_clients=4",
                                      "privacy.secagg.reconstruction_threshold=0.5"))
    assert cfg.privacy.secagg is not None
    inner = InProcGrid(app_of(plain), NODES)
    inner.drop_rule = lambda call, node: (call == 2 and node == 13) or (call == 3 and node == 12)
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 20)
    # Execute
    replies = grid.send_and_receive(messages(cfg))
    # Assert: 12's masks with 11 and 14 removed, none with 13 (which never masked): the exact sum of 11 and 14
    assert len(replies) == 2
    assert np.abs(replies[0].content[keys.ARRAYS]["w"].numpy() - expected_mean([11, 14])).max() < 1e-3
