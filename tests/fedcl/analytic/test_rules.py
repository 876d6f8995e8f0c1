"""``strategy=analytic`` / ``unlearning=analytic`` configs that cannot give their guarantee refuse to start.

Each case composes a synthetic config (3 clients, 2 tasks, 2 rounds per task: task 0 ends at round 2)
and checks the ``ConfigError`` names the key and says what to do (``fedcl/analytic/rules.py``).
"""

from __future__ import annotations

import pytest

from fedcl.config import compose
from fedcl.errors import ConfigError
from tests.conftest import synthetic_overrides

REQ = "unlearning.requests=[{round:1,kind:class,target:0}]"
LATE = "unlearning.requests=[{round:4,kind:class,target:0}]"


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        (["unlearning=analytic", LATE], "unlearning.name", "unless strategy=analytic"),
        (["strategy=analytic", "unlearning=ssd", LATE], "unlearning.name", "use unlearning=analytic"),
        (["strategy=analytic", "unlearning=ga", LATE], "unlearning.name", "none, retrain or analytic"),
        (["strategy=analytic", "eval.local_forgetting=true"], "eval.local_forgetting", "do not train after"),
        (["strategy=analytic", "privacy=dp_central"], "strategy.feature_bound", "bounds the DP sensitivity"),
        (["strategy=analytic", "privacy=secagg"], "strategy.feature_bound", "sizes the SecAgg+ ranges"),
        (["strategy=analytic", "strategy.base_rounds=3"], "strategy.base_rounds", "task 0 ends at round 2"),
        (["strategy=analytic", "unlearning=analytic", REQ], "unlearning.requests", "frozen after round 2"),
        (["strategy=analytic", "strategy.activation=gelu"], "strategy.activation", "['relu', 'tanh', 'none']"),
        (["strategy=analytic", "strategy.gamma=-1"], "strategy.gamma", ">= 0"),
        (["strategy=analytic", "strategy.feature_bound=0"], "strategy.feature_bound", "> 0"),
        (["strategy=analytic", "strategy.dp_unit=batch"], "strategy.dp_unit", "'sample'"),
        (["strategy=analytic", "unlearning=analytic", LATE, "unlearning.form=qr"], "unlearning.form", "downdate"),
    ],
)
def test_a_config_without_the_guarantee_is_refused(overrides: list[str], key: str, hint: str) -> None:
    # Execute
    with pytest.raises(ConfigError) as info:
        compose(synthetic_overrides(*overrides))
    # Assert
    assert info.value.key == key, str(info.value)
    assert hint in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=analytic"],
        ["strategy=analytic", "unlearning=retrain", REQ],
        ["strategy=analytic", "strategy.base_rounds=0", "unlearning=analytic", REQ],
        ["strategy=analytic", "privacy=dp_central", "strategy.feature_bound=1.0"],
        ["strategy=analytic", "privacy=secagg", "strategy.feature_bound=1.0"],
    ],
)
def test_configs_that_can_give_it_compose(overrides: list[str]) -> None:
    cfg = compose(synthetic_overrides(*overrides))
    assert cfg.strategy.name == "analytic"
