"""Local continual-learning methods, one per file.

``method.name: ewc`` loads ``fedcl/methods/ewc.py`` and the :class:`CLMethod`
subclass in it whose ``name`` is ``"ewc"``: adding a method is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from fedcl.data.streams import SCENARIOS
from fedcl.errors import ConfigError
from fedcl.methods.base import CLMethod, TaskContext

_NOT_METHODS = {"base"}


def available_methods() -> list[str]:
    """Names of the method files in this package."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_METHODS and not m.name.startswith("_")
    )


def method_class(name: str) -> type[CLMethod]:
    """The CLMethod subclass registered under ``name``."""
    if name not in available_methods():
        raise ConfigError("method.name", name, f"choose one of {available_methods()}")
    module = importlib.import_module(f"fedcl.methods.{name}")
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, CLMethod) and obj.name == name:
            return obj
    raise ConfigError("method.name", name, f"fedcl/methods/{name}.py defines no CLMethod named '{name}'")


def check_compatibility(method_name: str, scenario: str, blurry: bool) -> None:
    """Refuse a method on a stream it does not declare (``scenarios`` / ``blurry`` of its class).

    Raises
    ------
    ConfigError
        Naming the method, the scenario (and blurry boundaries) and what the method supports.
    """
    if scenario not in SCENARIOS:
        raise ConfigError("stream.scenario", scenario, f"one of {list(SCENARIOS)}")
    cls = method_class(method_name)
    supported = [s for s in SCENARIOS if s in cls.scenarios]
    what = f"method '{method_name}' supports {supported or 'no scenario (it declares none)'}"
    if scenario not in cls.scenarios:
        raise ConfigError(
            "method.name", method_name,
            f"{what}, not stream.scenario={scenario}; pick one of those scenarios or another method",
        )  # fmt: skip
    if blurry and not cls.blurry:
        raise ConfigError(
            "method.name", method_name,
            f"{what} but not blurry task boundaries (stream.blurry) on {scenario}; set stream.blurry=null "
            "or pick another method",
        )  # fmt: skip


def build_method(name: str, params: dict[str, Any] | None = None) -> CLMethod:
    """Instantiate the method ``name`` with keyword ``params`` from its YAML."""
    cls = method_class(name)
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise ConfigError(f"method.params ({name})", params, f"unknown or missing parameter: {exc}") from exc


__all__ = ["CLMethod", "TaskContext", "available_methods", "method_class", "build_method", "check_compatibility"]
