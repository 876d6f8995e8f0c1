"""Federated unlearning inside the continual stream, one method per file.

``unlearning=ssd`` selects :class:`fedcl.unlearning.ssd.SSD`; its options are the
constructor's keyword arguments, next to the group's own keys (``requests``,
``oracle_dir``, ``eval_samples``, ``data_access``, ``holdout``, ``forget_sets``).
Deletion requests are served during the run by ``strategies/unlearning.py``.
"""

from __future__ import annotations

from typing import Any

from fedcl.registry import Registry
from fedcl.unlearning.base import Unlearner
from fedcl.unlearning.requests import Request, parse_requests

UNLEARNERS: Registry[Unlearner] = Registry("unlearning.name", {
    "none": "fedcl.unlearning.base:Unlearner",
    "retrain": "fedcl.unlearning.retrain:Retrain",
    "ssd": "fedcl.unlearning.ssd:SSD",
    "ga": "fedcl.unlearning.ga:GradientAscent",
    "fed_eraser": "fedcl.unlearning.fed_eraser:FedEraser",
    "analytic": "fedcl.unlearning.analytic:AnalyticUnlearner",
    "iau": "fedcl.unlearning.iau:IAU",
})


# the group's own keys; the rest are the method's
COMMON_KEYS = ("requests", "oracle_dir", "eval_samples", "data_access", "holdout", "forget_sets")


def unlearning_params(unlearning: dict[str, Any]) -> dict[str, Any]:
    """The method's own options (constructor arguments) of a validated ``unlearning`` group."""
    return {k: v for k, v in unlearning.items() if k != "name" and k not in COMMON_KEYS}


def build_unlearner(unlearning: dict[str, Any]) -> Unlearner:
    """The method of a validated ``unlearning`` group, with its options."""
    return UNLEARNERS.get(str(unlearning["name"]))(**unlearning_params(unlearning))


__all__ = ["COMMON_KEYS", "UNLEARNERS", "Request", "Unlearner", "build_unlearner", "parse_requests",
           "unlearning_params"]
