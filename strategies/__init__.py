"""Flower Message-API strategies for continual streams, one per file.

``strategy=fot`` is ``simulations/conf/strategy/fot.yaml`` is ``strategies/fot.py`` is class ``FOT``.
"""

from __future__ import annotations

from typing import Any

from fedcl.registry import Registry

STRATEGIES: Registry[Any] = Registry("strategy.name", {
    "fedavg": "strategies.fedavg:FCLFedAvg",
    "fedprox": "strategies.fedavg:FCLFedAvg",
    "fot": "strategies.fot:FOT",
    "analytic": "strategies.analytic:Analytic",
})
