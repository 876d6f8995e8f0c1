"""Central DP through Flower's wrappers + the stream accountant, with constructed replies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedcl import keys
from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.privacy.accountant import Release, StreamAccountant
from tests.conftest import synthetic_overrides
from tests.strategies.helpers import FakeGrid, make_strategy


def make(*overrides: str) -> Any:
    return make_strategy(*overrides)


def privacy_row(s: Any) -> dict[str, Any]:
    """The privacy columns of the round's metrics.jsonl row (the DP averaging step is a round hook)."""
    return s.averager.round_metrics(0, ArrayRecord())  # type: ignore[no-any-return]


def reply(msg: Message, value: float) -> Message:
    return Message(RecordDict({
        keys.ARRAYS: ArrayRecord({"w": Array(np.full((2, 2), value, dtype=np.float32))}),
        keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5, keys.TRAIN_LOSS: 1.0}),
    }), reply_to=msg)


def test_accountant_matches_flower_and_accumulates() -> None:
    # Prepare
    acc = StreamAccountant(delta=1e-5)
    # Execute
    eps = [acc.compose(Release(1.0, 4, 4)) for _ in range(3)]
    # Assert: Flower's verified numbers (flower-guide 4.2), strictly growing
    assert eps[0] == pytest.approx(4.7285, abs=1e-3) and eps[2] == pytest.approx(9.00996, abs=1e-3)


def test_server_side_clipping_and_noise_and_epsilon_over_tasks(message_identity: None) -> None:
    # Prepare: 3 clients, 2 tasks x 2 rounds, server-side clipping to norm 0.1, tiny noise
    s = make("privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.noise_multiplier=0.01",
             "privacy.dp.clipping_norm=0.1")
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    eps = []
    for rnd in range(1, 5):
        msgs = s.configure_train(rnd, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
        # Execute
        new, _ = s.aggregate_train(rnd, [reply(m, 10.0) for m in msgs])
        eps.append(privacy_row(s)["epsilon"])
    # Assert: each update (norm 20) clipped to 0.1, then noised; epsilon keeps growing across the task switch
    w = new["w"].numpy()
    assert np.linalg.norm(w) == pytest.approx(0.1, abs=0.01) and not np.allclose(w, 0.05)
    assert all(b > a for a, b in zip(eps, eps[1:], strict=False))
    assert s.averager.state_dict()["accountant"]["releases"] == 4


def test_dp_wraps_fot_and_keeps_its_hooks(message_identity: None) -> None:
    # Prepare
    s = make("privacy=dp_central", "strategy=fot")
    # Assert: round loop / GPSE hooks reach FOT through the composition
    assert type(s).__name__ == "FOT" and type(s.averager).__name__ == "PrivateAveraging"


def test_bad_privacy_combinations_are_refused() -> None:
    with pytest.raises(ConfigError, match="privacy.dp.clipping"):
        compose(synthetic_overrides("privacy=secagg_dp", "privacy.dp.clipping=server"))
    with pytest.raises(ConfigError, match="unlearning.name"):
        compose(synthetic_overrides("privacy=secagg", "unlearning=fed_eraser"))
    with pytest.raises(ConfigError, match="privacy.dp.epsilon"):
        compose(synthetic_overrides("privacy=dp_local", "privacy.dp.epsilon=null"))


def test_adaptive_server_side_clipping_raises_a_too_small_norm(message_identity: None) -> None:
    # Prepare: every update (norm 20) is far above the initial norm 0.1, target quantile 0.5
    s = make("privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.adaptive=true",
             "privacy.dp.noise_multiplier=0.01", "privacy.dp.clipping_norm=0.1", "privacy.dp.clip_norm_lr=0.2")
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    norms = []
    for rnd in range(1, 5):
        msgs = s.configure_train(rnd, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
        # Execute
        s.aggregate_train(rnd, [reply(m, 10.0) for m in msgs])
        norms.append(privacy_row(s)["clipping_norm"])
    # Assert: the norm grows geometrically (all clipped: C <- C exp(lr (~1 - 0.5))), and is checkpointed.
    # Flower 1.41's wrappers alone shrink it here (they apply exp(-lr (clipped - target))): see strategies/privacy.py
    assert all(b > a * 1.05 for a, b in zip([0.1, *norms], norms, strict=False)), norms
    assert s.averager.state_dict()["clipping_norm"] == pytest.approx(norms[-1])
    assert s.averager.state_dict()["accountant"]["releases"] == 4


def test_max_epsilon_stops_before_the_round_that_would_exceed_it(message_identity: None) -> None:
    # Prepare: 3 clients, z = 1: one release costs epsilon ~4.7 at delta 1e-5 (see the accountant test)
    s = make("privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.max_epsilon=6.0")
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})
    msgs = s.configure_train(1, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
    s.aggregate_train(1, [reply(m, 0.1) for m in msgs])
    spent = privacy_row(s)["epsilon"]
    # Execute / Assert: the second release would reach ~7.08 > 6.0: the round is refused before any message goes out
    from flwr.serverapp.exception import PrivacyBudgetExhausted

    with pytest.raises(PrivacyBudgetExhausted, match="max_epsilon=6.0"):
        s.configure_train(2, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
    assert spent == pytest.approx(4.7285, abs=1e-3) and privacy_row(s)["epsilon"] == spent
    assert s.averager.state_dict()["accountant"]["releases"] == 1


def test_adaptive_client_side_clipping_follows_the_clients_norm_bits(message_identity: None) -> None:
    # Prepare: client-side adaptive clipping; every client reports it clipped (norm_bit 1), then none does
    s = make("privacy=dp_central", "privacy.dp.clipping=client", "privacy.dp.adaptive=true",
             "privacy.dp.noise_multiplier=0.01", "privacy.dp.clipping_norm=1.0")
    arrays = ArrayRecord({"w": Array(np.zeros((2, 2), dtype=np.float32))})

    def round_with(rnd: int, bit: int) -> float:
        msgs = s.configure_train(rnd, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
        replies = [reply(m, 0.1) for m in msgs]
        for r in replies:
            r.content[keys.METRICS]["norm_bit"] = bit
        s.aggregate_train(rnd, replies)
        return float(privacy_row(s)["clipping_norm"])

    # Execute
    up = round_with(1, 1)
    down = round_with(2, 0)
    # Assert: all clipped -> the norm rises; none clipped -> it falls (Andrew et al.'s direction)
    assert up > 1.05 and down < up / 1.05


def test_strategy_declaring_individual_updates_is_refused_under_secure_aggregation() -> None:
    # Prepare: a strategy whose server logic needs each client's own update (e.g. a history-based one)
    from strategies.fedavg import FCLFedAvg
    from strategies.server.build import refuse_individual_updates

    class NeedsEachUpdate(FCLFedAvg):
        individual_updates_reason = "keeps every client's update for calibration"

    # Execute / Assert: refused with the reason; the same strategy without secure aggregation is fine
    with pytest.raises(ConfigError, match="keeps every client's update"):
        refuse_individual_updates(NeedsEachUpdate, compose(synthetic_overrides("privacy=secagg")))
    refuse_individual_updates(NeedsEachUpdate, compose(synthetic_overrides("privacy=none")))
