"""Torch intra-op threads of a Ray actor matched to the CPUs Ray gave it.

Ray sets ``OMP_NUM_THREADS`` to an actor's CPU share only when the variable is
unset; with it set in the environment (common on clusters), every ClientApp
actor would start that many torch threads and ``#actors x threads`` would
oversubscribe the machine. Called once per process by the ClientApp.
"""

from __future__ import annotations

import math
import sys

import torch

_done: list[int] = []


def ray_cpu_share() -> float | None:
    """CPUs Ray assigned to this worker, or None outside a Ray worker."""
    ray = sys.modules.get("ray")  # never import Ray ourselves: deployment SuperNodes run without it
    if ray is None or not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - the driver or an unusual worker mode: leave torch alone
        return None
    return float(cpus) if cpus else None


def match_torch_threads() -> int:
    """Set torch's intra-op threads to ``max(1, floor(CPU share))`` inside a Ray actor; return the count.

    Outside Ray (plain runs, deployment SuperNodes) torch's own default stays.
    """
    if not _done:
        share = ray_cpu_share()
        if share is not None:
            torch.set_num_threads(max(1, math.floor(share)))
        _done.append(torch.get_num_threads())
    return _done[0]
