"""Federated unlearning inside the continual stream, one method per file.

``unlearning.name: ssd`` selects :class:`fedcl.unlearning.ssd.SSD`; deletion requests
(``unlearning.requests``) are served by ``strategies/unlearning.py`` during the run.
"""

from __future__ import annotations

import importlib
from typing import Any

from fedcl.errors import ConfigError
from fedcl.unlearning.base import Unlearner
from fedcl.unlearning.requests import Request, parse_requests

# unlearning.name -> "module:Class"
METHODS: dict[str, str] = {
    "none": "fedcl.unlearning.base:Unlearner",
    "retrain": "fedcl.unlearning.retrain:Retrain",
    "ssd": "fedcl.unlearning.ssd:SSD",
    "ga": "fedcl.unlearning.ga:GradientAscent",
    "fed_eraser": "fedcl.unlearning.fed_eraser:FedEraser",
}
_RENAMED = {"lambda": "lam"}  # YAML keys that are Python keywords


def unlearner_class(name: str) -> type[Unlearner]:
    """The class registered under ``name``."""
    if name not in METHODS:
        raise ConfigError("unlearning.name", name, f"choose one of {sorted(METHODS)}")
    module, cls_name = METHODS[name].split(":")
    cls: type[Unlearner] = getattr(importlib.import_module(module), cls_name)
    return cls


def build_unlearner(ucfg: dict[str, Any]) -> Unlearner:
    """Instantiate ``ucfg['name']`` with ``ucfg['params']``."""
    name = str(ucfg.get("name", "none"))
    cls = unlearner_class(name)
    params = {_RENAMED.get(k, k): v for k, v in (ucfg.get("params") or {}).items()}
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"unlearning.params ({name})", ucfg.get("params"), f"unknown parameter: {exc}") from exc


def validate_unlearning(cfg: dict[str, Any]) -> None:
    """Check the ``unlearning`` group before any process starts (bounds known from the config)."""
    ucfg = cfg.get("unlearning") or {}
    name = ucfg.get("name", "none")
    cls = unlearner_class(str(name))
    build_unlearner(ucfg)  # parameter names and ranges
    fed = cfg["federation"]
    st = cfg["stream"]
    total = None
    if (cfg.get("schedule") or {}).get("name", "synchronous") in (None, "synchronous") and not fed.get("schedule"):
        total = int(st["num_tasks"]) * int(fed["rounds_per_task"])
    num_classes = int(st["synthetic"]["num_classes"]) if st.get("dataset") == "synthetic" else None
    if st.get("dataset") == "fashion_mnist":
        num_classes = 10
    reqs = parse_requests(ucfg.get("requests"), total, int(fed["num_clients"]), num_classes)
    if (cfg.get("privacy") or {}).get("secure_aggregation") and cls.needs_individual_updates:
        raise ConfigError(
            "unlearning.name", name,
            "a method that needs each client's individual updates (FedEraser keeps a history of them); "
            "privacy.secure_aggregation=true hides them: choose unlearning=ssd, ga or retrain",
        )
    od = ucfg.get("oracle_dir")
    if od is not None and not isinstance(od, str):
        raise ConfigError("unlearning.oracle_dir", od, "null or the folder of a finished unlearning=retrain run")
    es = ucfg.get("eval_samples", 500)
    if isinstance(es, bool) or not isinstance(es, int) or es < 1:
        raise ConfigError("unlearning.eval_samples", es, "an integer >= 1 (samples per forget / retain / test set)")
    if name not in ("none",) and not reqs:
        raise ConfigError("unlearning.requests", ucfg.get("requests"),
                          f"at least one {{round, kind, target}} request for unlearning={name}")


__all__ = ["METHODS", "Request", "Unlearner", "build_unlearner", "parse_requests", "unlearner_class",
           "validate_unlearning"]
