"""FOT strategy with constructed replies: projection each round, GPSE basis growth at task end."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.errors import RoundError
from fedcl.fot import protocol as gpse
from fedcl.subspace import weight_view
from strategies.fot import FOT
from tests.strategies.helpers import make_strategy

D_IN, D_OUT = 6, 3


class GPSEGrid:
    """Answers query.gpse messages with sketches of a known 2-dim subspace."""

    def __init__(self, basis: np.ndarray) -> None:
        self.basis = basis
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return [1, 2]

    def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
        replies = []
        for i, msg in enumerate(messages):
            self.sent.append(msg)
            rng = np.random.default_rng(i)
            A = self.basis @ rng.normal(size=(self.basis.shape[1], 30))
            Y = (A @ rng.normal(size=(30, D_IN))).astype(np.float32)
            content = RecordDict({
                gpse.SKETCH: ArrayRecord({"fc": Array(Y)}),
                gpse.STATS: MetricRecord({keys.NUM_EXAMPLES: 30, "fc/ratio-weighted": 30.0}),
            })
            replies.append(Message(content, reply_to=msg))
        return replies


def make_fot(*overrides: str) -> FOT:
    strategy = make_strategy("strategy=fot", *overrides)
    assert isinstance(strategy, FOT)
    return strategy


def arrays_of(w: np.ndarray, b: np.ndarray) -> ArrayRecord:
    return ArrayRecord({"fc.weight": Array(w.astype(np.float32)), "fc.bias": Array(b.astype(np.float32))})


def test_gpse_grows_basis_and_rounds_after_project(message_identity: None) -> None:
    # Prepare: the clients' layer inputs live in span(e0, e1)
    strategy = make_fot()
    basis = np.eye(D_IN)[:, :2]
    grid = GPSEGrid(basis)
    w0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))
    # Execute: end of task 0 (round 2 with 2 rounds per task) -> GPSE
    strategy.on_task_end(2, 0, w0, grid)
    # Assert: one query.gpse per client that trained task 0, basis = span(e0, e1)
    assert len(grid.sent) == 3 and all(m.metadata.message_type == "query.gpse" for m in grid.sent)
    U = strategy.fot.bases["fc"]
    assert U.shape == (D_IN, 2)
    np.testing.assert_allclose((U @ U.T).numpy(), basis @ basis.T, atol=1e-5)
    assert strategy.sketch_bytes >= 3 * D_IN * D_IN * 4  # three float32 d x d sketches (+ record framing)

    # Execute: a training round of task 1; clients move the weights in every direction
    msgs = strategy.configure_train(3, w0, ConfigRecord(), grid)
    rng = np.random.default_rng(0)
    replies = []
    for msg in msgs:
        content = RecordDict({
            keys.ARRAYS: arrays_of(rng.normal(size=(D_OUT, D_IN)), rng.normal(size=D_OUT)),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10}),
        })
        replies.append(Message(content, reply_to=msg))
    new, _ = strategy.aggregate_train(3, replies)
    # Assert: the global update has no component in the protected subspace; biases move freely
    assert new is not None
    delta = torch.from_numpy(new["fc.weight"].numpy())
    assert torch.linalg.norm(weight_view(delta) @ U) <= 1e-5 * torch.linalg.norm(delta)
    assert np.abs(new["fc.bias"].numpy()).sum() > 0


def test_fot_state_is_checkpointed(message_identity: None) -> None:
    strategy = make_fot()
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), GPSEGrid(np.eye(D_IN)[:, :3]))
    restored = make_fot()
    restored.load_state_dict(strategy.state_dict())
    assert torch.equal(restored.fot.bases["fc"], strategy.fot.bases["fc"])
    assert restored.state_dict()["basis_dims"] == {"fc": 3}


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean"])
def test_fot_with_a_robust_aggregator_ignores_a_poisoned_client_and_still_projects(
    message_identity: None, aggregator: str
) -> None:
    # Prepare: bases from task 0, then a task-1 round where one of 3 clients sends weights of 1e6
    strategy = make_fot(f"strategy.aggregator={aggregator}", "strategy.trim_beta=0.34")
    w0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))
    strategy.on_task_end(2, 0, w0, GPSEGrid(np.eye(D_IN)[:, :2]))
    msgs = list(strategy.configure_train(3, w0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2])))
    rng = np.random.default_rng(1)
    replies = []
    for i, msg in enumerate(msgs):
        w = np.full((D_OUT, D_IN), 1e6) if i == 0 else rng.normal(size=(D_OUT, D_IN))
        replies.append(Message(RecordDict({keys.ARRAYS: arrays_of(w, np.zeros(D_OUT)),
                                           keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10})}), reply_to=msg))
    # Execute
    new, _ = strategy.aggregate_train(3, replies)
    # Assert: the honest clients' scale (the mean would be ~3e5), and no component in the protected subspace
    assert new is not None
    delta = torch.from_numpy(new["fc.weight"].numpy())
    assert float(delta.abs().max()) < 10.0
    assert torch.linalg.norm(weight_view(delta) @ strategy.fot.bases["fc"]) <= 1e-5 * torch.linalg.norm(delta)


def test_round_update_is_fedavgs_outside_the_bases_and_zero_inside_by_hand(message_identity: None) -> None:
    # Prepare: basis span(e_0, e_1) of the 6 inputs; a non-zero global model W; three clients
    # with 10, 30 and 20 examples (so FedAvg's average W_bar is a weighted mean)
    strategy = make_fot()
    strategy.fot.bases = {"fc": torch.eye(D_IN)[:, :2].contiguous()}
    W = np.arange(D_OUT * D_IN, dtype=np.float64).reshape(D_OUT, D_IN) / 4.0
    w0 = arrays_of(W, np.ones(D_OUT))
    msgs = list(strategy.configure_train(3, w0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2])))
    sizes = [10, 30, 20]
    client_w = [np.full((D_OUT, D_IN), v) for v in (2.0, -1.0, 4.0)]
    client_b = [np.full(D_OUT, v) for v in (1.0, 3.0, -3.0)]
    replies = [
        Message(RecordDict({keys.ARRAYS: arrays_of(w, b), keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n})}),
                reply_to=m)
        for m, w, b, n in zip(msgs, client_w, client_b, sizes, strict=True)
    ]
    # Execute
    new, _ = strategy.aggregate_train(3, replies)
    # Assert: W_bar = (10 * 2 - 30 * 1 + 20 * 4) / 60 = 7/6 everywhere; the inputs e_0, e_1 keep W,
    # the other inputs take W_bar exactly; the bias (not projected) is FedAvg's (10 + 90 - 60) / 60
    assert new is not None
    got = new["fc.weight"].numpy()
    np.testing.assert_allclose(got[:, :2], W[:, :2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[:, 2:], np.full((D_OUT, D_IN - 2), 7.0 / 6.0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(new["fc.bias"].numpy(), np.full(D_OUT, 40.0 / 60.0), rtol=0, atol=1e-6)
    assert strategy.projection_seconds > 0.0


def test_no_projection_before_the_first_basis(message_identity: None) -> None:
    # Prepare: task 0, no basis yet
    strategy = make_fot()
    w0 = arrays_of(np.ones((D_OUT, D_IN)), np.zeros(D_OUT))
    msgs = list(strategy.configure_train(1, w0, ConfigRecord(), GPSEGrid(np.eye(D_IN)[:, :2])))
    replies = [
        Message(RecordDict({keys.ARRAYS: arrays_of(np.full((D_OUT, D_IN), float(i)), np.zeros(D_OUT)),
                            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10})}), reply_to=m)
        for i, m in enumerate(msgs)
    ]
    # Execute
    new, _ = strategy.aggregate_train(1, replies)
    # Assert: FedAvg's mean (0 + 1 + 2) / 3 everywhere, untouched
    assert new is not None
    np.testing.assert_allclose(new["fc.weight"].numpy(), np.ones((D_OUT, D_IN)), rtol=0, atol=1e-6)
    assert strategy.projection_seconds == 0.0


class _FailingGrid(GPSEGrid):
    def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
        self.sent.extend(messages)
        return []


def test_gpse_query_content_and_traffic_accounting(message_identity: None) -> None:
    # Prepare: a basis already holds e_0; the clients' inputs live in span(e_0, e_1)
    strategy = make_fot()
    strategy.fot.bases = {"fc": torch.eye(D_IN)[:, :1].contiguous()}
    grid = GPSEGrid(np.eye(D_IN)[:, :2])
    w0 = arrays_of(np.ones((D_OUT, D_IN)), np.zeros(D_OUT))
    # Execute
    strategy.on_task_end(2, 0, w0, grid)
    # Assert: every client of task 0 is asked with its id, the task, the round, the model and the old bases
    configs = [m.content[keys.CONFIG] for m in grid.sent]
    assert sorted(int(c[keys.CLIENT_ID]) for c in configs) == [0, 1, 2]
    assert all(int(c[keys.TASK_ID]) == 0 and int(c[keys.SERVER_ROUND]) == 2 for c in configs)
    sent_bases = grid.sent[0].content[gpse.BASES]
    np.testing.assert_array_equal(sent_bases["fc"].numpy(), np.eye(D_IN, dtype=np.float32)[:, :1])
    np.testing.assert_array_equal(grid.sent[0].content[keys.ARRAYS]["fc.weight"].numpy(), np.ones((D_OUT, D_IN)))
    assert strategy.bytes_down == 3 * (w0.count_bytes() + sent_bases.count_bytes())
    assert strategy.bytes_up == strategy.sketch_bytes > 3 * D_IN * D_IN * 4 and strategy.gpse_seconds > 0
    # the basis grew by e_1 only (r_bar = 1, e_0 was already there) and eps rose by d_eps
    U = strategy.fot.bases["fc"]
    assert U.shape[1] == 2
    np.testing.assert_allclose((U @ U.T).numpy(), np.diag([1.0, 1.0, 0, 0, 0, 0]), atol=1e-5)


def test_gpse_without_any_reply_is_a_round_error(message_identity: None) -> None:
    strategy = make_fot()
    advice = "no client gave a sound GPSE reply.*fix the clients and continue with resume=<run folder>$"
    with pytest.raises(RoundError, match=advice):
        strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), _FailingGrid(np.eye(D_IN)))
    assert strategy.fot.bases == {}


def test_fot_counters_round_trip(message_identity: None) -> None:
    strategy = make_fot()
    strategy.gpse_seconds, strategy.projection_seconds, strategy.sketch_bytes = 1.5, 0.25, 1234
    state = strategy.state_dict()
    restored = make_fot()
    restored.load_state_dict(state)
    assert (restored.gpse_seconds, restored.projection_seconds, restored.sketch_bytes) == (1.5, 0.25, 1234)
    assert state["fot"]["eps"] == strategy.fot.eps and state["basis_dims"] == {}


class _TimeoutGrid(GPSEGrid):
    def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
        self.timeout = timeout
        return super().send_and_receive(messages, timeout)


def test_defaults_of_fot_and_its_options_reach_the_strategy() -> None:
    from strategies.round_faults import RoundFaults

    # Prepare / Execute
    bare = make_fot()
    custom = make_fot("strategy.eps=0.9", "strategy.d_eps=0.01", "strategy.sketch_factor=2",
                      "strategy.gpse_max_samples=50")
    # Assert: the YAML's defaults are the paper's; overrides land on the strategy
    assert (bare.fot.eps, bare.fot.d_eps, bare.fot.bases) == (0.96, 0.0, {})
    assert (bare.cfg.strategy.sketch_factor, bare.cfg.strategy.gpse_max_samples) == (1, 500)
    assert (bare.gpse_seconds, bare.projection_seconds, bare.sketch_bytes) == (0.0, 0.0, 0)
    assert isinstance(bare.gpse_faults, RoundFaults) and bare._round_start is None
    assert (custom.fot.eps, custom.fot.d_eps) == (0.9, 0.01)
    assert (custom.cfg.strategy.sketch_factor, custom.cfg.strategy.gpse_max_samples) == (2, 50)


def test_counters_accumulate_across_queries_and_rounds(message_identity: None) -> None:
    # Prepare: counters already holding earlier tasks' totals; the query waits as long as a round
    strategy = make_fot("federation.round_timeout_s=7.5")
    strategy.bytes_down, strategy.bytes_up, strategy.sketch_bytes = 1000, 2000, 3000
    strategy.gpse_seconds, strategy.projection_seconds = 100.0, 200.0
    grid = _TimeoutGrid(np.eye(D_IN)[:, :2])
    w0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))
    # Execute: a GPSE query, then a projected round
    strategy.on_task_end(2, 0, w0, grid)
    sent_bytes = strategy.bytes_up - 2000
    assert strategy.bytes_down == 1000 + 3 * (w0.count_bytes() + grid.sent[0].content[gpse.BASES].count_bytes())
    msgs = list(strategy.configure_train(3, w0, ConfigRecord(), grid))
    replies = [Message(RecordDict({keys.ARRAYS: arrays_of(np.ones((D_OUT, D_IN)), np.zeros(D_OUT)),
                                   keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10})}), reply_to=m) for m in msgs]
    strategy.aggregate_train(3, replies)
    # Assert
    assert grid.timeout == 7.5
    assert strategy.bytes_down > 1000 and sent_bytes > 3 * D_IN * D_IN * 4
    assert strategy.sketch_bytes == 3000 + sent_bytes
    assert 100.0 < strategy.gpse_seconds < 160.0 and 200.0 < strategy.projection_seconds < 260.0


def test_aggregate_before_any_round_start_leaves_the_average_alone(message_identity: None) -> None:
    strategy = make_fot()
    strategy.fot.bases = {"fc": torch.eye(D_IN)[:, :2].contiguous()}
    arrays = arrays_of(np.ones((D_OUT, D_IN)), np.zeros(D_OUT))
    assert strategy.aggregate_extras(1, arrays, [], []) is arrays


def test_gpse_replies_without_examples_are_refused(message_identity: None) -> None:
    class NoExamples(GPSEGrid):
        def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
            out = []
            for msg in messages:
                content = RecordDict({gpse.SKETCH: ArrayRecord({"fc": Array(np.eye(D_IN, dtype=np.float32))}),
                                      gpse.STATS: MetricRecord({"fc/ratio-weighted": 30.0})})
                out.append(Message(content, reply_to=msg))
            return out

    strategy = make_fot()
    with pytest.raises((ValueError, RoundError)):
        strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), NoExamples(np.eye(D_IN)))
    assert strategy.fot.bases == {}


def test_gpse_skips_excluded_clients_and_tells_the_others_the_forgotten_classes(message_identity: None) -> None:
    # Prepare: served deletion requests for client 1 and for class 0
    strategy = make_fot()
    strategy.exclude_clients([1])
    strategy.set_client_config(keys.FORGET_CLASSES, [0])
    grid = GPSEGrid(np.eye(D_IN)[:, :2])
    # Execute: the end of task 0
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), grid)
    # Assert: client 1 is never asked; every query names the forgotten class, so no client sketches it
    configs = [m.content[keys.CONFIG] for m in grid.sent]
    assert sorted(int(c[keys.CLIENT_ID]) for c in configs) == [0, 2]
    assert all(list(c[keys.FORGET_CLASSES]) == [0] for c in configs)


def test_gpse_under_a_lockstep_heterogeneous_schedule_asks_only_the_tasks_clients(message_identity: None) -> None:
    # Prepare: 6 clients, each task trained by round(0.5 * 6) = 3 of them (FOT's heterogeneous set-up)
    strategy = make_fot("federation.num_clients=6", "schedule=heterogeneous", "schedule.layout=lockstep",
                        "schedule.task_fraction_per_client=0.5")
    holders = [sorted(c for c in range(6) if strategy.schedule.task_at(2 * (t + 1), c) == t) for t in (0, 1)]
    grid = GPSEGrid(np.eye(D_IN)[:, :2])
    # Execute: the ends of tasks 0 and 1 (rounds 2 and 4)
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), grid)
    strategy.on_task_end(4, 1, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), grid)
    # Assert: each task's GPSE asks exactly the 3 clients that trained it
    asked = [int(m.content[keys.CONFIG][keys.CLIENT_ID]) for m in grid.sent]
    assert [len(h) for h in holders] == [3, 3] and holders[0] != holders[1]
    assert asked == holders[0] + holders[1]


class _ByClientGrid(GPSEGrid):
    """Sketches seeded by the logical client (not the position in the batch); records each batch's size."""

    def __init__(self, basis: np.ndarray) -> None:
        super().__init__(basis)
        self.batches: list[int] = []

    def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        self.batches.append(len(messages))
        replies = []
        for msg in messages:
            self.sent.append(msg)
            rng = np.random.default_rng(int(msg.content[keys.CONFIG][keys.CLIENT_ID]))  # type: ignore[index]
            Y = (self.basis @ rng.normal(size=(self.basis.shape[1], D_IN))).astype(np.float32)
            content = RecordDict({
                gpse.SKETCH: ArrayRecord({"fc": Array(Y)}),
                gpse.STATS: MetricRecord({keys.NUM_EXAMPLES: 30, "fc/ratio-weighted": 30.0}),
            })
            replies.append(Message(content, reply_to=msg))
        return replies


@pytest.mark.parametrize(("clients", "per_round", "batches"), [(7, 3, [3, 3, 1]), (4, 1, [1, 1, 1, 1])])
def test_gpse_asks_a_rounds_worth_of_clients_at_a_time_with_the_same_result(
    message_identity: None, clients: int, per_round: int, batches: list[int]
) -> None:
    # Prepare: the clients trained task 0; asked a round's worth at a time (one at a time: the first batch's
    # sketch layout comes from a single reply), or all at once
    basis = np.eye(D_IN)[:, :2]
    w0 = arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT))
    batched = make_fot(f"federation.num_clients={clients}", f"federation.clients_per_round={per_round}")
    at_once = make_fot(f"federation.num_clients={clients}")
    grids = _ByClientGrid(basis), _ByClientGrid(basis)
    # Execute
    batched.on_task_end(2, 0, w0, grids[0])
    at_once.on_task_end(2, 0, w0, grids[1])
    # Assert: the server never holds more than a round's queries and sketches; every client answered once
    assert grids[0].batches == batches and grids[1].batches == [clients]
    assert batched.gpse_faults.accepted == at_once.gpse_faults.accepted == list(range(clients))
    assert batched.sketch_bytes == at_once.sketch_bytes and batched.bytes_down == at_once.bytes_down
    U, V = batched.fot.bases["fc"], at_once.fot.bases["fc"]
    np.testing.assert_allclose((U @ U.T).numpy(), (V @ V.T).numpy(), atol=1e-6)
    np.testing.assert_allclose((U @ U.T).numpy(), basis @ basis.T, atol=1e-5)


def test_gpse_later_batches_must_match_the_first_batchs_sketch_layout(message_identity: None) -> None:
    # Prepare: clients 3 and 4, the majority of the second batch (3, 4, 5), send sketches of another shape
    class OddGrid(_ByClientGrid):
        def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
            replies = super().send_and_receive(messages, timeout)
            for r in replies:
                if int(self.sent[-len(replies) + replies.index(r)].content[keys.CONFIG][keys.CLIENT_ID]) in (3, 4):
                    r.content[gpse.SKETCH] = ArrayRecord({"fc": Array(np.ones((D_IN, 2), np.float32))})
            return replies

    strategy = make_fot("federation.num_clients=7", "federation.clients_per_round=3")
    # Execute
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), OddGrid(np.eye(D_IN)[:, :2]))
    # Assert: refused with the reason, the others summed
    assert strategy.gpse_faults.accepted == [0, 1, 2, 5, 6]
    assert "shapes differ" in strategy.gpse_faults.rejected[3] and "shapes differ" in strategy.gpse_faults.rejected[4]


class _OneSketchReplaced(_ByClientGrid):
    """``_ByClientGrid`` whose reply at ``position`` in every batch carries ``sketch`` as its ``fc`` sketch."""

    def __init__(self, basis: np.ndarray, position: int, sketch: np.ndarray) -> None:
        super().__init__(basis)
        self.position, self.sketch = position, sketch

    def send_and_receive(self, messages: Iterable[Message], timeout: float | None = None) -> list[Message]:
        replies = super().send_and_receive(messages, timeout)
        replies[self.position].content[gpse.SKETCH] = ArrayRecord({"fc": Array(self.sketch)})
        return replies


def test_gpse_two_replies_that_disagree_on_the_layout_are_not_summed(
    message_identity: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: two clients trained task 0; client 1 sends a sketch of another shape
    grid = _OneSketchReplaced(np.eye(D_IN)[:, :2], 1, np.ones((D_IN, 2), np.float32))
    strategy = make_fot("federation.num_clients=2")
    # Execute
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), grid)
    # Assert: one of the two is rejected (named in the log as a GPSE reply), the other grows the basis
    assert len(strategy.gpse_faults.accepted) == 1 and len(strategy.gpse_faults.rejected) == 1
    [(client, reason)] = strategy.gpse_faults.rejected.items()
    assert reason == "sketch names/shapes differ from the other clients'"
    assert f"gpse: client {client} rejected: {reason}" in caplog.messages
    assert strategy.fot.bases["fc"].shape[0] == D_IN


def test_a_broken_gpse_reply_is_logged_as_a_gpse_rejection(
    message_identity: None, caplog: pytest.LogCaptureFixture
) -> None:
    grid = _OneSketchReplaced(np.eye(D_IN)[:, :2], 0, np.full((D_IN, D_IN), np.nan, np.float32))
    strategy = make_fot()
    strategy.on_task_end(2, 0, arrays_of(np.zeros((D_OUT, D_IN)), np.zeros(D_OUT)), grid)
    assert list(strategy.gpse_faults.rejected) == [0]
    assert f"gpse: client 0 rejected: {strategy.gpse_faults.rejected[0]}" in caplog.messages


def test_fot_options_reach_its_state(message_identity: None) -> None:
    strategy = make_fot("strategy.eps=0.8", "strategy.d_eps=0.05", "strategy.min_new_directions=2")
    assert (strategy.fot.eps, strategy.fot.d_eps, strategy.fot.min_new, strategy.fot.bases) == (0.8, 0.05, 2, {})
