"""Hydra composition of ``simulations/conf``: the one composition every launcher and the Python API use."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from fedcl.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "simulations" / "conf"
GROUPS = (
    "stream", "model", "method", "strategy", "privacy", "unlearning", "backend", "schedule", "faults", "experiment"
)


def group_options(group: str) -> list[str]:
    """The option names of a Hydra config group (the YAML files in its folder)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def split_overrides(overrides: str | list[str] | None) -> list[str]:
    """Hydra override strings from a shell-like string (``flwr run -c``) or a list."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return shlex.split(overrides)
    return list(overrides)


def _choices(value: str) -> list[str]:
    """Option names in an override value: ``a``, ``a,b`` (a sweep), ``[a,b]`` (a list: ``method=[er,ewc]``)."""
    return [p.strip() for p in value.replace("[", ",").replace("]", ",").split(",") if p.strip()]


def check_group_options(overrides: list[str]) -> None:
    """Name an unknown group option and list the valid ones (Hydra's message is long)."""
    for ovr in overrides:
        key, sep, value = ovr.lstrip("+~").partition("=")
        if sep and key in GROUPS and value not in ("null", ""):
            for v in _choices(value):
                if v not in group_options(key):
                    raise ConfigError(key, v, f"choose one of {group_options(key)}")


def compose_dict(overrides: str | list[str] | None = None, experiment: str | None = None) -> dict[str, Any]:
    """``simulations/conf/config.yaml`` composed with overrides, as a plain dict (not yet validated)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    ovr = split_overrides(overrides)
    if experiment:
        ovr = [f"experiment={experiment}", *ovr]
    check_group_options(ovr)
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=ovr)
        resolved = OmegaConf.to_container(cfg, resolve=True)
    # OmegaConf raises plain ValueError/TypeError/KeyError for some malformed overrides (a key into a list)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            "overrides", " ".join(ovr), f"{first.rstrip('.')}; the keys and options are in simulations/conf"
        ) from exc
    assert isinstance(resolved, dict)
    return {str(k): v for k, v in resolved.items() if k != "hydra"}


# run-config keys of the ServerApp that are not config keys
RUN_CONFIG_OWN = ("experiment", "overrides", "config-file", "run-dir")


def run_config_overrides(run_config: dict[str, Any]) -> list[str]:
    """Hydra overrides from a Flower run config: its common keys given directly, then its ``overrides`` string.

    ``flwr run . -c "seed=3 strategy='fot' federation.num-clients=10"`` sets keys that
    ``[tool.flwr.app.config]`` declares with the value ``""`` (= the YAML's); Flower
    allows no lists there, so a list goes as a string (``method='[er,ewc]'``).
    """
    out = []
    for key, value in run_config.items():
        if key in RUN_CONFIG_OWN or value == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f"{key.replace('-', '_')}={value}")
    return [*out, *split_overrides(str(run_config["overrides"]))]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
