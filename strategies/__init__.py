"""Flower Message-API strategies for continual streams, one per file."""

from __future__ import annotations

import importlib
from typing import Any

from fedcl.data import Schedule
from fedcl.errors import ConfigError

# strategy.name -> "module:Class"
STRATEGIES: dict[str, str] = {
    "fedavg": "strategies.fedavg:FCLFedAvg",
    "fedprox": "strategies.fedavg:FCLFedAvg",
    "fot": "strategies.fot:FOT",
}


def build_strategy(cfg: dict[str, Any], schedule: Schedule, state_dir: str | None) -> Any:
    """The strategy named by ``cfg['strategy']['name']`` with its YAML keys as arguments."""
    scfg = dict(cfg["strategy"])
    name = scfg.pop("name")
    if name not in STRATEGIES:
        raise ConfigError("strategy.name", name, f"choose one of {sorted(STRATEGIES)}")
    module, cls_name = STRATEGIES[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    fed = cfg["federation"]
    try:
        strategy = cls(
            schedule=schedule,
            run_config=cfg,
            num_clients=int(fed["num_clients"]),
            clients_per_round=fed.get("clients_per_round"),
            state_dir=state_dir,
            **scfg,
        )
    except TypeError as exc:
        raise ConfigError(f"strategy ({name})", scfg, f"unknown parameter: {exc}") from exc
    from strategies.privacy import with_privacy  # privacy=...: DP wrapper / secure-aggregation checks

    return with_privacy(strategy, cfg)
