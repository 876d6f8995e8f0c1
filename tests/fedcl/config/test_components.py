"""A component's options are its class's keyword arguments, and its YAML lists them with the same defaults.

So a default exists once in effect: the YAML a user reads is the class a reader reads, or this test fails.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from fedcl.config import compose, group_options
from fedcl.config.components import keyword_params
from fedcl.data.schedules import SCHEDULE_ARGS, SCHEDULES
from fedcl.errors import ConfigError
from fedcl.methods import METHODS
from fedcl.models import MODELS
from fedcl.unlearning import UNLEARNERS, unlearning_params
from tests.conftest import synthetic_overrides

REQUEST = "unlearning.requests=[{round:2,kind:class,target:1}]"


def _defaults(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for name, (_, default) in keyword_params(cls, skip).items():
        assert default is not ..., f"{cls.__name__}.{name} has no default: its YAML must list it"
        out[name] = list(default) if isinstance(default, tuple) else default
    return out


@pytest.mark.parametrize("option", group_options("method"))
def test_every_method_yaml_lists_its_class_defaults(option: str) -> None:
    cfg = compose(synthetic_overrides(f"method={option}"))
    for name, params in cfg.method.items():
        assert params == _defaults(METHODS.get(name)), f"method={option}: {name}"


@pytest.mark.parametrize("option", group_options("unlearning"))
def test_every_unlearning_yaml_lists_its_class_defaults(option: str) -> None:
    strategy = ["strategy=analytic"] if option == "analytic" else []  # unlearning=analytic needs its strategy
    cfg = compose(synthetic_overrides(f"unlearning={option}", *([REQUEST] if option != "none" else []), *strategy))
    assert unlearning_params(cfg.unlearning) == _defaults(UNLEARNERS.get(option))


@pytest.mark.parametrize("option", group_options("schedule"))
def test_every_schedule_yaml_lists_its_class_defaults(option: str) -> None:
    cfg = compose(synthetic_overrides(f"schedule={option}"))
    params = {k: v for k, v in cfg.schedule.items() if k != "name"}
    assert params == _defaults(SCHEDULES.get(option), SCHEDULE_ARGS)


@pytest.mark.parametrize("option", group_options("model"))
def test_every_model_yaml_lists_its_class_defaults(option: str) -> None:
    cfg = compose([f"model={option}"])
    assert cfg.model.model_dump(exclude={"name"}) == _defaults(MODELS.get(option), ("in_shape", "num_classes",
                                                                                     "num_heads"))


def test_a_key_the_class_does_not_take_is_refused_with_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"method\.ewc\.ewc_lamda.*did you mean 'ewc_lambda'"):
        compose(synthetic_overrides("method=ewc", "+method.ewc.ewc_lamda=3"))
    with pytest.raises(ConfigError, match="method.ewc.ewc_lambda"):
        compose(synthetic_overrides("method=ewc", "method.ewc.ewc_lambda=high"))


def test_the_constructor_checks_run_before_any_process_starts() -> None:
    # EMA refuses beta outside [0, 1] in its constructor: the config check calls it
    assert "beta" in inspect.signature(METHODS.get("ema")).parameters
    with pytest.raises(ConfigError, match="method.ema"):
        compose(synthetic_overrides("method=ema", "method.ema.beta=1.5"))
