"""Central DP through Flower's wrappers + the stream accountant, with constructed replies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedcl import keys
from fedcl.config import compose
from fedcl.data import build_schedule
from fedcl.errors import ConfigError
from fedcl.privacy.accountant import StreamAccountant
from strategies import build_strategy
from tests.conftest import synthetic_overrides
from tests.strategies.test_fedavg import FakeGrid


def make(*overrides: str):  # noqa: ANN201
    cfg = compose(synthetic_overrides(*overrides))
    schedule = build_schedule(cfg["federation"], cfg["stream"]["num_tasks"], cfg["federation"]["num_clients"], 0)
    return build_strategy(cfg, schedule, None)


def reply(msg: Message, value: float) -> Message:
    return Message(RecordDict({
        keys.ARRAYS: ArrayRecord({"w": Array(np.full((2, 2), value, dtype=np.float32))}),
        keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5, keys.TRAIN_LOSS: 1.0}),
    }), reply_to=msg)


def test_accountant_matches_flower_and_accumulates() -> None:
    # Prepare
    acc = StreamAccountant(delta=1e-5, population_size=4)
    # Execute
    eps = [acc.compose(1.0, 4) for _ in range(3)]
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
        eps.append(s.privacy_row()["epsilon"])
    # Assert: each update (norm 20) clipped to 0.1, then noised; epsilon keeps growing across the task switch
    w = new["w"].numpy()
    assert np.linalg.norm(w) == pytest.approx(0.1, abs=0.01) and not np.allclose(w, 0.05)
    assert all(b > a for a, b in zip(eps, eps[1:], strict=False))
    assert s.state_dict()["privacy_accountant"]["releases"] == 4


def test_dp_wraps_fot_and_keeps_its_hooks(message_identity: None) -> None:
    # Prepare
    s = make("privacy=dp_central", "strategy=fot")
    # Assert: round loop / GPSE hooks reach FOT through the composition
    assert type(s.base).__name__ == "FOT" and callable(s.on_task_end) and s.fot is s.base.fot


def test_bad_privacy_combinations_are_refused() -> None:
    with pytest.raises(ConfigError, match="privacy.dp.clipping"):
        compose(synthetic_overrides("privacy=secagg_dp", "privacy.dp.clipping=server"))
    with pytest.raises(ConfigError, match="unlearning.name"):
        compose(synthetic_overrides("privacy=secagg", "unlearning=fed_eraser"))
    with pytest.raises(ConfigError, match="privacy.dp.epsilon"):
        compose(synthetic_overrides("privacy=dp_local", "privacy.dp.epsilon=null"))
