"""Local continual-learning methods, one per file; ``method=[er,ewc]`` composes several.

``method=ewc`` is ``simulations/conf/method/ewc.yaml`` is ``fedcl/methods/ewc.py`` is
class ``EWC``; its options are the constructor's keyword arguments
(:mod:`fedcl.config.components` validates them).
"""

from __future__ import annotations

from typing import Any

from fedcl.config.schema import SCENARIOS
from fedcl.errors import ConfigError
from fedcl.methods.base import CLMethod, TaskContext
from fedcl.methods.compose import Composite
from fedcl.registry import Registry

METHODS: Registry[CLMethod] = Registry("method", {
    "naive": "fedcl.methods.naive:Naive",
    "joint": "fedcl.methods.joint:Joint",
    "ewc": "fedcl.methods.ewc:EWC",
    "si": "fedcl.methods.si:SI",
    "lwf": "fedcl.methods.lwf:LwF",
    "er": "fedcl.methods.er:ER",
    "derpp": "fedcl.methods.derpp:DERPP",
    "agem": "fedcl.methods.agem:AGEM",
    "uer": "fedcl.methods.uer:UER",
    "wa": "fedcl.methods.wa:WA",
    "fpf": "fedcl.methods.fpf:FPF",
    "kfpf": "fedcl.methods.fpf:KFPF",
    "kfpf_kd": "fedcl.methods.fpf:KFPFKD",
    "ema": "fedcl.methods.ema:EMA",
    "ema_balanced": "fedcl.methods.ema_balanced:EMABalanced",
    "lines": "fedcl.methods.lines:LiNeS",
    "gpm": "fedcl.methods.gpm:GPM",
    "fedcurv": "fedcl.methods.fedcurv:FedCurv",
})


def check_compatibility(method_name: str, scenario: str, blurry: bool) -> None:
    """Refuse a method on a stream it does not declare (``scenarios`` / ``blurry`` of its class).

    Raises
    ------
    ConfigError
        Naming the method, the scenario (and blurry boundaries) and what the method supports.
    """
    if scenario not in SCENARIOS:
        raise ConfigError("stream.scenario", scenario, f"one of {list(SCENARIOS)}")
    cls = METHODS.get(method_name)
    supported = [s for s in SCENARIOS if s in cls.scenarios]
    what = f"method '{method_name}' supports {supported or 'no scenario (it declares none)'}"
    if scenario not in cls.scenarios:
        raise ConfigError(
            "method", method_name,
            f"{what}, not stream.scenario={scenario}; pick one of those scenarios or another method",
        )  # fmt: skip
    if blurry and not cls.blurry:
        raise ConfigError(
            "method", method_name,
            f"{what} but not blurry task boundaries (stream.blurry) on {scenario}; set stream.blurry=null "
            "or pick another method",
        )  # fmt: skip


def build_method(methods: dict[str, dict[str, Any]]) -> CLMethod:
    """The client's method from the validated ``method`` group: one method, or a :class:`Composite` of several."""
    parts = {name: METHODS.get(name)(**params) for name, params in methods.items()}
    if len(parts) == 1:
        return next(iter(parts.values()))
    return Composite(parts)


__all__ = ["METHODS", "CLMethod", "Composite", "TaskContext", "build_method", "check_compatibility"]
