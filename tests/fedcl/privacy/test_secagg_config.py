"""SecAgg+ combinations that cannot give their guarantee refuse to start (issue 17, items 3, 5, 8)."""

from __future__ import annotations

import pytest

from fedcl.config import compose
from fedcl.errors import ConfigError
from tests.conftest import synthetic_overrides


def test_a_round_that_would_wrap_the_modulus_is_refused() -> None:
    # Prepare: 2^22 quantisation levels, modulus 2^32: 1,024 clients' sum reaches 2^32
    ok = synthetic_overrides("privacy=secagg", "federation.num_clients=1023")
    wraps = synthetic_overrides("privacy=secagg", "federation.num_clients=1024")
    # Execute / Assert
    assert compose(ok).federation.per_round == 1023
    with pytest.raises(ConfigError, match="privacy.secagg.modulus_range.*1024 x 4194304"):
        compose(wraps)
    assert compose([*wraps, "privacy.secagg.modulus_range=8589934592"]).federation.per_round == 1024


def test_local_forgetting_under_secagg_is_refused() -> None:
    with pytest.raises(ConfigError, match="eval.local_forgetting"):
        compose(synthetic_overrides("privacy=secagg", "eval.local_forgetting=true"))


def test_client_level_ga_under_secagg_is_refused_and_class_level_is_not() -> None:
    client = "unlearning.requests=[{round:2,kind:client,target:1}]"
    with pytest.raises(ConfigError, match="not ga for a client-level request"):
        compose(synthetic_overrides("privacy=secagg", "unlearning=ga", client))
    class_level = "unlearning.requests=[{round:2,kind:class,target:1}]"
    compose(synthetic_overrides("privacy=secagg", "unlearning=ga", class_level))
