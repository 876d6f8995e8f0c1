"""Shared, cached runs for the method tests: naive baselines and a state-capturing driver."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from fedcl.methods.base import CLMethod
from fedcl.methods.naive import Naive
from fedcl.models import MLP
from tests.fedcl.methods.toy import FedResult, ToyResult, run_federated, run_two_tasks
from tests.fedcl.methods.toy_multihead import DIM as MH_DIM
from tests.fedcl.methods.toy_multihead import mh_task, run_two_tasks_multi_head


@cache
def naive_toy(seed: int) -> ToyResult:
    """Naive fine-tuning on the class-incremental toy (computed once per test session)."""
    return run_two_tasks(Naive, seed=seed)


@cache
def naive_multi_head(seed: int) -> ToyResult:
    """Naive fine-tuning on the task-incremental toy (computed once per test session)."""
    return run_two_tasks_multi_head(Naive, seed=seed)


def run_capture(cls: type[CLMethod], params: dict[str, Any], seed: int = 0) -> tuple[ToyResult, CLMethod]:
    """``run_two_tasks`` that also returns the method object of the last round."""
    built: list[CLMethod] = []

    def make() -> CLMethod:
        built.append(cls(**params))
        return built[-1]

    result = run_two_tasks(make, seed=seed)
    return result, built[-1]


@cache
def naive_federated(multi_head: bool = False) -> FedResult:
    """Naive fine-tuning, two clients averaged by FedAvg (``toy.run_federated``), computed once per session."""
    return run_federated(Naive, **federated_kwargs(multi_head))


def federated_kwargs(multi_head: bool) -> dict[str, Any]:
    """``run_federated`` arguments of the class-incremental (default) or the two-head stream."""
    if not multi_head:
        return {}
    torch.manual_seed(0)
    return {"model": MLP((MH_DIM,), 4, hidden=[2], num_heads=2), "task_fn": mh_task, "multi_head": True, "lr": 0.1}
