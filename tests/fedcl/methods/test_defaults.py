"""A method's constructor defaults are its Hydra group's values: ``method=X`` and ``X()`` are one method."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcl.methods import METHODS
from tests.fedcl.methods.test_ema import assert_state_equal

CONF = Path(__file__).resolve().parents[3] / "simulations" / "conf" / "method"
# one file per method (er_ewc composes two of them); the file's single top-level key is the method's name
FILES = sorted(p for p in CONF.glob("*.yaml") if list(yaml.safe_load(p.read_text()) or {}) == [p.stem])


def _defaults(cls: type) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {k: p.default for k, p in sig.parameters.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def test_every_registered_method_has_its_own_config_file() -> None:
    assert {p.stem for p in FILES} == set(METHODS.names())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_constructor_defaults_equal_the_config_group(path: Path) -> None:
    # Prepare
    options = yaml.safe_load(path.read_text())[path.stem] or {}
    # Execute
    cls = METHODS.get(path.stem)
    defaults = _defaults(cls)
    built = cls()
    # Assert: every option the file sets is a constructor argument with that default, and every argument with a
    # default is in the file (a user sees and can override each of them)
    assert set(options) == set(defaults), path.name
    for key, value in options.items():
        assert defaults[key] == value, f"{path.name}: {key} = {value!r} in the file, {defaults[key]!r} in the class"
    # ... and what the constructor keeps is that value (options are stored under their own names)
    kept = {k: getattr(built, k) for k in options if hasattr(built, k)}
    assert kept == {k: options[k] for k in kept}, path.name
    assert len(kept) >= len(options) // 2, f"{path.name}: most options are kept under their own names"


@pytest.mark.parametrize("name", METHODS.names())
def test_a_fresh_state_round_trips_and_an_empty_state_loads_as_fresh(name: str) -> None:
    # Prepare: a client that has not trained yet, and a state written before the method stored anything
    cls = METHODS.get(name)
    fresh = cls().state_dict()
    # Execute
    restored = cls()
    restored.load_state_dict(fresh)
    from_empty = cls()
    from_empty.load_state_dict({})
    # Assert
    assert_state_equal(restored.state_dict(), fresh)
    assert_state_equal(from_empty.state_dict(), fresh)
