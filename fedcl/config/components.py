"""Config groups whose options are classes: their keys are the class's keyword arguments.

A local method, an unlearning method or a schedule declares its options once, as the
typed keyword arguments of its constructor (``EWC(ewc_lambda: float = 100.0, ...)``);
this module turns that signature into a strict pydantic model, so a config key that
the class does not take is an unknown key (with close matches), a value of the wrong
type is refused with the key's name, and the constructor's own checks run before any
process starts. The YAML of each option lists the same keys with the same defaults
(``tests/fedcl/config/test_components.py`` holds them equal).
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from fedcl.config.errors import as_config_error, unknown_key
from fedcl.errors import ConfigError
from fedcl.registry import Registry


def keyword_params(cls: type, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """``name -> (type, default)`` of ``cls``'s keyword arguments, following ``**kwargs`` up the MRO."""
    out: dict[str, tuple[Any, Any]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        hints = typing.get_type_hints(init, include_extras=True)
        sig = inspect.signature(init)
        for name, p in sig.parameters.items():
            if name == "self" or name in skip or name in out or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = ... if p.default is inspect.Parameter.empty else p.default
            out[name] = (hints.get(name, Any), default)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return out


@functools.cache
def params_model(cls: type, skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A strict pydantic model of ``cls``'s keyword arguments (unknown keys refused)."""
    fields: dict[str, Any] = {name: (tp, default) for name, (tp, default) in keyword_params(cls, skip).items()}
    return create_model(  # type: ignore[no-any-return,call-overload]
        f"{cls.__name__}Options", __config__=ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def check_params(cls: type, params: Any, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``params`` validated against ``cls``'s signature (defaults of missing keys filled in)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(prefix, params, f"a mapping of {cls.__name__}'s options")
    model = params_model(cls, skip)
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise as_config_error(exc, model, prefix) from exc


def construct(cls: type, params: dict[str, Any], key: str, *args: Any) -> Any:
    """``cls(*args, **params)``, its own value checks turned into a :class:`ConfigError` naming ``key``."""
    try:
        return cls(*args, **params)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(key, params, str(exc)) from exc


def _named(value: Any, key: str, registry: Registry[Any], common: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """Split a flat group (``name`` + options) into the class name and its options."""
    if not isinstance(value, dict):
        raise ConfigError(key, value, f"a mapping with a name among {registry.names()}")
    name = value.get("name")
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{key}.name", name, f"one of {registry.names()}")
    return name, {k: v for k, v in value.items() if k != "name" and k not in common}


def validate_methods(value: Any) -> dict[str, dict[str, Any]]:
    """``method``: ``{name: options}`` for each local method in hook order (``method=[er,ewc]``)."""
    from fedcl.methods import METHODS

    if not isinstance(value, dict) or not value:
        raise ConfigError("method", value, f"a mapping {{method name: options}}; methods: {METHODS.names()}")
    out: dict[str, dict[str, Any]] = {}
    for name, params in value.items():
        if name not in METHODS:
            raise unknown_key(f"method.{name}", params, METHODS.names())
        cls = METHODS.get(name)
        out[name] = check_params(cls, params, f"method.{name}")
        construct(cls, out[name], f"method.{name}")
    return out


def validate_schedule_options(value: Any) -> dict[str, Any]:
    """``schedule``: a schedule name and its class's options (the plan is checked with the stream's size later)."""
    from fedcl.data.schedules import SCHEDULE_ARGS, SCHEDULES

    name, params = _named(value, "schedule", SCHEDULES)
    return {"name": name, **check_params(SCHEDULES.get(name), params, "schedule", SCHEDULE_ARGS)}


def _unlearning_access(value: Any) -> None:
    """``unlearning.data_access`` / ``holdout`` / ``forget_sets``: what clients hold, the non-members, chosen sets."""
    da, ho, fs = value["data_access"], value["holdout"], value["forget_sets"]
    if da not in ("history", "buffer"):
        raise ConfigError("unlearning.data_access", da, "history (every seen task's data) or buffer (the current "
                          "task's data and the replay buffer: what a continual client holds)")
    if isinstance(ho, bool) or not isinstance(ho, (int, float)) or not 0 <= ho < 1:
        raise ConfigError("unlearning.holdout", ho, "a fraction in [0, 1) of every client's data held out of "
                          "training as membership-inference non-members (0.1 by default)")
    if fs is not None and not isinstance(fs, str):
        raise ConfigError("unlearning.forget_sets", fs, "null or the path of a forget-sets.json written by an "
                          "earlier run of this config (<run>/unlearning/forget-sets.json)")


def validate_unlearning_options(value: Any) -> dict[str, Any]:
    """``unlearning``: the method name, the requests and evaluation keys, and the method's own options."""
    from fedcl.unlearning import COMMON_KEYS, UNLEARNERS

    name, params = _named(value, "unlearning", UNLEARNERS, COMMON_KEYS)
    missing = [k for k in COMMON_KEYS if k not in value]
    if missing:
        raise ConfigError(f"unlearning.{missing[0]}", "(missing)", "this key is required; see simulations/conf")
    od, es = value["oracle_dir"], value["eval_samples"]
    if od is not None and not isinstance(od, str):
        raise ConfigError("unlearning.oracle_dir", od, "null or the folder of a finished unlearning=retrain run")
    if isinstance(es, bool) or not isinstance(es, int) or es < 1:
        raise ConfigError("unlearning.eval_samples", es, "an integer >= 1 (samples per forget / retain / test set)")
    _unlearning_access(value)
    cls = UNLEARNERS.get(name)
    options = check_params(cls, params, "unlearning")
    construct(cls, options, "unlearning")
    return {"name": name, **{k: value[k] for k in COMMON_KEYS}, **options}
