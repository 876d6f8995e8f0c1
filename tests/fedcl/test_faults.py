"""Fault injection: deterministic by (seed, round, client, attempt), at the configured rates."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedcl import keys
from fedcl.config.schema import Faults
from fedcl.faults import FaultPlan, InjectedCrash

CRASHY = Faults(name="crashy", crash_prob=0.2, nan_prob=0.1, delay_prob=0.0, delay_s=0.0)
NONE = Faults(name="none", crash_prob=0.0, nan_prob=0.0, delay_prob=0.0, delay_s=0.0)


def plans(seed: int, attempt: int = 0) -> list[FaultPlan]:
    return [FaultPlan.draw(CRASHY, seed, r, c, attempt) for r in range(1, 51) for c in range(20)]


def test_same_seed_same_faults_and_retry_draws_anew() -> None:
    assert plans(0) == plans(0)
    assert plans(0) != plans(1)
    assert plans(0) != plans(0, attempt=1)


def test_rates_match_the_config() -> None:
    p = plans(0)
    crash = np.mean([x.crash for x in p])
    nan = np.mean([x.nan for x in p])
    # 1000 draws: 4 standard deviations of a Bernoulli mean are < 0.06
    assert abs(crash - 0.2) < 0.06 and abs(nan - 0.1) < 0.05


def test_no_faults_config_never_faults() -> None:
    assert not any(x.crash or x.nan or x.delay_s for x in [FaultPlan.draw(NONE, 0, r, 0) for r in range(100)])


def test_crash_raises_and_nan_poisons_only_values() -> None:
    with pytest.raises(InjectedCrash, match="client 3 in round 2"):
        FaultPlan(crash=True).before_train(3, 2)
    content = RecordDict({
        keys.ARRAYS: ArrayRecord({"w": Array(np.ones((2, 3), dtype=np.float32))}),
        keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5}),
    })
    out = FaultPlan(nan=True).after_train(content)
    w = out[keys.ARRAYS]["w"].numpy()  # type: ignore[index]
    assert w.shape == (2, 3) and w.dtype == np.float32 and np.isnan(w).all()
