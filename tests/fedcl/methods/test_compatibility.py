"""Declared compatibility: every method states its scenarios; check_compatibility refuses the rest."""

from __future__ import annotations

import pytest

from fedcl.config import compose
from fedcl.config.schema import SCENARIOS
from fedcl.errors import ConfigError
from fedcl.methods import METHODS, check_compatibility
from fedcl.methods.base import CLMethod
from tests.conftest import synthetic_overrides


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_its_scenarios_in_its_own_class(name: str) -> None:
    cls = METHODS.get(name)
    # in the class body itself: a subclass (WA of ER) must not inherit a set it does not support
    assert "scenarios" in vars(cls) and "blurry" in vars(cls), f"{name} declares no compatibility"
    assert cls.scenarios and cls.scenarios <= set(SCENARIOS)
    assert isinstance(cls.blurry, bool)


def test_declared_pairs_pass_and_undeclared_pairs_are_refused() -> None:
    for name in METHODS.names():
        cls = METHODS.get(name)
        for scenario in SCENARIOS:
            if scenario in cls.scenarios:
                check_compatibility(name, scenario, blurry=False)
            else:
                with pytest.raises(ConfigError):
                    check_compatibility(name, scenario, blurry=False)


def test_refusal_names_the_method_the_scenario_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        check_compatibility("wa", "task_incremental", blurry=False)
    msg = str(info.value)
    assert "'wa'" in msg and "task_incremental" in msg and "['class_incremental']" in msg


def test_blurry_is_refused_for_a_method_that_does_not_declare_it() -> None:
    check_compatibility("er", "class_incremental", blurry=True)
    with pytest.raises(ConfigError, match="blurry"):
        check_compatibility("wa", "class_incremental", blurry=True)


def test_the_methods_built_around_one_scenario_declare_only_it() -> None:
    # WA aligns old against new classes of one shared head: no meaning on heads that do not compete,
    # nor on a permuted domain (no new classes; lam = old / seen classes = 1 would drop the CE)
    assert METHODS.get("wa").scenarios == {"class_incremental"}
    assert "domain_permuted" not in METHODS.get("uer").scenarios
    assert METHODS.get("joint").scenarios == set(SCENARIOS)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="stream.scenario"):
        check_compatibility("naive", "online", blurry=False)
    with pytest.raises(ConfigError, match="method"):
        check_compatibility("icarl", "class_incremental", blurry=False)


def test_an_incompatible_pairing_is_refused_before_anything_starts() -> None:
    # Prepare / Execute / Assert: the config itself is refused, naming both; composed methods are each checked
    with pytest.raises(ConfigError, match=r"'wa'.*stream.scenario=task_incremental"):
        compose(synthetic_overrides("method=wa", "stream.scenario=task_incremental"))
    with pytest.raises(ConfigError, match=r"'uer'.*domain_permuted"):
        compose(synthetic_overrides("method=[er,uer]", "stream.scenario=domain_permuted"))
    compose(synthetic_overrides("method=[er,ewc]", "stream.scenario=domain_permuted"))


class _Mute(CLMethod):
    scenarios = frozenset()
    blurry = False


def test_refusals_read_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a registered method that declares no scenario
    monkeypatch.setitem(METHODS._entries, "mute", "tests.fedcl.methods.test_compatibility:_Mute")
    refusals = {
        ("naive", "online", False): f"config key 'stream.scenario' = 'online' is invalid: one of {list(SCENARIOS)}",
        ("wa", "task_incremental", False): "config key 'method' = 'wa' is invalid: method 'wa' supports "
        "['class_incremental'], not stream.scenario=task_incremental; pick one of those scenarios or another method",
        ("wa", "class_incremental", True): "config key 'method' = 'wa' is invalid: method 'wa' supports "
        "['class_incremental'] but not blurry task boundaries (stream.blurry) on class_incremental; "
        "set stream.blurry=null or pick another method",
        ("mute", "class_incremental", False): "config key 'method' = 'mute' is invalid: method 'mute' supports "
        "no scenario (it declares none), not stream.scenario=class_incremental; pick one of those scenarios or "
        "another method",
    }
    for (name, scenario, blurry), message in refusals.items():
        # Execute
        with pytest.raises(ConfigError) as info:
            check_compatibility(name, scenario, blurry=blurry)
        # Assert
        assert str(info.value) == message
