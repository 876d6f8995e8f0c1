"""Every DP release accounted with the right multiplier, sensitivity and population, or refused (issue 17)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedcl import keys
from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.privacy.accountant import PrivacyBudgetExhausted, Release, StreamAccountant
from tests.conftest import synthetic_overrides
from tests.strategies.helpers import FakeGrid, make_strategy


def small_reply(msg: Message, size: int = 20_000) -> Message:
    """An update of norm 0.014 (below every clipping norm here; Flower's clipping divides by the norm)."""
    return Message(RecordDict({
        keys.ARRAYS: ArrayRecord({"w": Array(np.full(size, 1e-4, dtype=np.float32))}),
        keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5, keys.TRAIN_LOSS: 1.0}),
    }), reply_to=msg)


def zeros(size: int = 20_000) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.zeros(size, dtype=np.float32))})


def ledger(s: Any) -> list[Release]:
    return list(s.averager.accountant.ledger)


# ---- item 9: sampling without replacement ----------------------------------------------------
def test_without_replacement_accounts_the_replace_one_sensitivity() -> None:
    # Prepare: the example: z = 1, 10 of 100 clients per round, 100 rounds, delta 1e-5
    acc = StreamAccountant(delta=1e-5, sampling="without_replacement")
    # Execute
    for _ in range(100):
        eps = acc.compose(Release(1.0, 10, 100))
    # Assert: replace-one doubles the sensitivity (z/2 per release): ~84, not the ~14 of z passed unchanged
    assert 70.0 < eps < 100.0, eps


def test_a_release_composed_n_times_at_once_is_n_releases() -> None:
    # Prepare
    one_by_one = StreamAccountant(delta=1e-5, sampling="without_replacement")
    at_once = StreamAccountant(delta=1e-5, sampling="without_replacement")
    train, gpse = Release(2.0, 10, 100), Release(8.0, 50, 50, kind="gpse")
    # Execute
    for _ in range(30):
        one_by_one.compose(train)
    one_by_one.compose(gpse)
    at_once.compose(train, 30)
    eps = at_once.compose(gpse)
    # Assert: the same epsilon and the same ledger (a resumed run replays it)
    assert eps == pytest.approx(one_by_one.epsilon, rel=1e-9)
    assert at_once.ledger == one_by_one.ledger and at_once.releases_by_kind() == {"train": 30, "gpse": 1}
    with pytest.raises(ValueError, match="at least once"):
        at_once.compose(train, 0)


def test_without_replacement_population_is_the_eligible_clients(message_identity: None) -> None:
    # Prepare: 3 clients, one excluded (left after an unlearning request): the sample comes from 2
    s = make_strategy("privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.sampling=without_replacement",
                      "privacy.dp.noise_multiplier=1.0")
    s._excluded.add(2)
    msgs = s.configure_train(1, zeros(), ConfigRecord(), FakeGrid([1, 2, 3]))
    # Execute
    s.aggregate_train(1, [small_reply(m) for m in msgs])
    # Assert
    [release] = ledger(s)
    assert (release.sample_size, release.population_size) == (2, 2)


def test_without_replacement_is_refused_for_local_dp() -> None:
    with pytest.raises(ConfigError, match="privacy.dp.sampling"):
        compose(synthetic_overrides("privacy=dp_local", "privacy.dp.sampling=without_replacement"))


# ---- item 10: max_epsilon with the effective multiplier ----------------------------------------
def test_a_dropout_keeps_the_noise_on_the_sum_at_z_c_and_the_budget_holds(message_identity: None) -> None:
    # Prepare: z = 1, C = 0.5, 3 sampled, one drops out; one release at z = 1 costs epsilon ~4.73 (< 5)
    s = make_strategy("privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.noise_multiplier=1.0",
                      "privacy.dp.clipping_norm=0.5", "privacy.dp.max_epsilon=5.0")
    msgs = s.configure_train(1, zeros(), ConfigRecord(), FakeGrid([1, 2, 3]))
    # Execute
    new, _ = s.aggregate_train(1, [small_reply(m) for m in msgs[:2]])
    # Assert: the mean of 2 replies carries std z C / 2 (z C on their sum), the ledger has z, epsilon <= budget
    assert new is not None
    assert float(np.std(new["w"].numpy())) * 2 == pytest.approx(0.5, rel=0.05)
    assert [r.noise_multiplier for r in ledger(s)] == [1.0]
    assert s.averager.epsilon == pytest.approx(4.7285, abs=1e-3) and s.averager.epsilon <= 5.0


def test_check_refuses_the_release_that_would_exceed_the_budget() -> None:
    # Prepare
    acc = StreamAccountant(delta=1e-5, max_epsilon=5.0)
    acc.compose(Release(1.0, 3, 3))
    # Execute / Assert: the second release at z = 1 would reach ~7.08
    with pytest.raises(PrivacyBudgetExhausted, match="max_epsilon=5.0"):
        acc.check(Release(1.0, 3, 3))
    assert acc.releases == 1


# ---- item 11: every release accounted or refused -------------------------------------------
@pytest.mark.parametrize("privacy", ["dp_central", "dp_local"])
def test_fedcurv_under_dp_is_refused(privacy: str) -> None:
    with pytest.raises(ConfigError, match="no fedcurv under privacy.dp"):
        compose(synthetic_overrides(f"privacy={privacy}", "method=[fedcurv]"))


@pytest.mark.parametrize("method", ["ga", "ssd", "fed_eraser"])
def test_unaccounted_unlearning_under_dp_is_refused(method: str) -> None:
    request = "unlearning.requests=[{round:2,kind:class,target:1}]"
    with pytest.raises(ConfigError, match=f"not {method} under privacy.dp"):
        compose(synthetic_overrides("privacy=dp_central", f"unlearning={method}", request))


def test_fed_eraser_error_under_secagg_does_not_recommend_dp() -> None:
    with pytest.raises(ConfigError) as err:
        compose(synthetic_overrides("privacy=secagg", "unlearning=fed_eraser"))
    assert "use privacy=dp_central" not in str(err.value) and "only privacy=none" in str(err.value)


def test_fot_under_local_dp_is_refused() -> None:
    with pytest.raises(ConfigError, match="not fot under local DP"):
        compose(synthetic_overrides("privacy=dp_local", "strategy=fot"))


def test_a_retried_round_under_local_dp_is_a_release(message_identity: None) -> None:
    # Prepare: local DP: each try's clients send their own noised updates
    s = make_strategy("privacy=dp_local")
    s.configure_train(1, zeros(), ConfigRecord(), FakeGrid([1, 2, 3]))
    # Execute: the round is retried, and then completes
    msgs = s.configure_train(1, zeros(), ConfigRecord(), FakeGrid([1, 2, 3]))
    s.aggregate_train(1, [small_reply(m) for m in msgs])
    # Assert: two releases, the first filed as the retried try
    assert [r.kind for r in ledger(s)] == ["train-retry", "train"]


# ---- item 13: a noise the model cannot survive -----------------------------------------------
def test_a_diverging_noise_is_refused_with_its_scale(message_identity: None) -> None:
    # Prepare: 3 clients, z = 1, C = 1: std 0.33 per coordinate on weights of RMS 0.05
    s = make_strategy("privacy=dp_central", "privacy.dp.noise_multiplier=1.0", "privacy.dp.clipping_norm=1.0")
    arrays = ArrayRecord({"w": Array(np.full(100, 0.05, dtype=np.float32))})
    # Execute / Assert
    with pytest.raises(ConfigError, match="noise std per coordinate .* RMS of the model's weights"):
        s.configure_train(1, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))


def test_dp_pmnist_experiment_composes_with_many_clients_per_round() -> None:
    cfg = compose(["experiment=dp_pmnist", "privacy=dp_central", "privacy.dp.sampling=without_replacement"])
    assert (cfg.federation.num_clients, cfg.federation.per_round) == (1000, 100)
