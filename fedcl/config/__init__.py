"""The experiment config: Hydra composes ``simulations/conf``, a typed schema validates it.

* :func:`compose` (overrides -> :class:`Config`) is what ``python -m simulations.run``,
  the ServerApp under ``flwr run`` and :func:`fedcl.compose` all use;
* :func:`validate` turns a plain dict (a config file, a checkpoint's config) into a
  :class:`Config`, raising :class:`~fedcl.errors.ConfigError` that names the key,
  the value and what is allowed, before any process starts;
* :func:`from_json` is the clients' cached parse of the config JSON a message carries.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from fedcl.config.compose import (
    CONF_DIR,
    GROUPS,
    check_group_options,
    compose_dict,
    flatten,
    group_options,
    run_config_overrides,
    split_overrides,
)
from fedcl.config.errors import as_config_error
from fedcl.config.root import Config
from fedcl.config.types import Section
from fedcl.errors import ConfigError

_MODEL_KEYS_FROM_STREAM = ("multi_head", "num_heads")


def validate(data: Any) -> Config:
    """A plain dict as a validated :class:`Config` (a :class:`Config` is returned as it is)."""
    if isinstance(data, Config):
        return data
    if not isinstance(data, dict):
        raise ConfigError("(config)", data, "a mapping of config keys (see simulations/conf/config.yaml)")
    model = data.get("model")
    if isinstance(model, dict):
        for k in _MODEL_KEYS_FROM_STREAM:  # say why, not just "unknown key"
            if k in model:
                raise ConfigError(f"model.{k}", model[k],
                                  "the heads follow stream.scenario: task_incremental gives one head per task; "
                                  "class_incremental and domain_permuted need one shared head (remove the key)")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise as_config_error(exc, Config) from exc


def validate_section(section: Any, data: Any, prefix: str) -> Any:
    """One config section (``stream``, ``model``, ...) of type ``section`` from a plain dict.

    Errors name the key as in a whole config (``<prefix>.<key>``).
    """
    holder = _holder(section, prefix)
    try:
        return getattr(holder.model_validate({prefix: data}), prefix)
    except ValidationError as exc:
        raise as_config_error(exc, holder) from exc


@functools.cache
def _holder(section: Any, prefix: str) -> type[BaseModel]:
    return create_model(f"{prefix.title()}Holder", __base__=Section, **{prefix: (section, ...)})  # type: ignore[call-overload,no-any-return]


def compose(overrides: str | list[str] | None = None, experiment: str | None = None) -> Config:
    """``simulations/conf/config.yaml`` composed with Hydra overrides, validated."""
    return validate(compose_dict(overrides, experiment))


def load(path: str | Path) -> Config:
    """A config file (YAML or JSON, e.g. a run folder's ``config.yaml``), validated."""
    import yaml

    with open(path) as fh:
        return validate(yaml.safe_load(fh))


def to_json(cfg: Config) -> str:
    """Canonical JSON of a config (sorted keys: equal configs, equal strings)."""
    return json.dumps(cfg.dump(), sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=8)
def from_json(blob: str) -> Config:
    """The config a message carries (parsed once per process and blob)."""
    return validate(json.loads(blob))


__all__ = ["CONF_DIR", "GROUPS", "Config", "check_group_options", "compose", "compose_dict", "flatten", "from_json",
           "group_options", "load", "run_config_overrides", "split_overrides", "to_json", "validate",
           "validate_section"]
