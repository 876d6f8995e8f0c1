"""Heterogeneous task orders and task subsets: each client sees the tasks its own way."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcl.data.schedules.offsets import OffsetSchedule
from fedcl.errors import ConfigError
from fedcl.seeding import TAG_ORDER, TAG_SUBSET, numpy_rng

ORDERS = ("same", "shuffled")


class HeterogeneousSchedule(OffsetSchedule):
    """Per-client task orders (FedWeIT-style) and per-client task subsets (FOT's heterogeneous variant).

    Yoon et al., "Federated Continual Learning with Weighted Inter-client Transfer",
    ICML 2021, give every client its own task sequence; Bakman et al., "Federated
    Orthogonal Training", ICLR 2024, let each client see only part of the tasks.
    Client ``c`` keeps ``ceil(task_fraction_per_client * num_tasks)`` tasks (a seeded
    subset; every task is kept by at least one client) in its own seeded order
    (``order: shuffled``) or in stream order (``order: same``). Offsets compose as in
    :class:`OffsetSchedule`.

    Parameters
    ----------
    num_tasks, rounds_per_task, num_clients, seed : int
        As for :class:`~fedcl.data.schedules.base.Schedule`.
    order : str, default "shuffled"
        ``shuffled`` (per-client permutation) or ``same``.
    task_fraction_per_client : float, default 1.0
        Fraction of the tasks each client trains, in (0, 1].
    orders : sequence of sequences | None, default None
        Explicit per-client task lists (overrides ``order`` and the fraction).
    max_offset : int, default 0
        Per-client offsets drawn in ``[0, max_offset]`` (none by default).
    **kwargs
        Offsets, availability and sampling options.
    """

    name = "heterogeneous"

    def __init__(
        self,
        num_tasks: int,
        rounds_per_task: int,
        num_clients: int,
        seed: int,
        *,
        order: str = "shuffled",
        task_fraction_per_client: float = 1.0,
        orders: Sequence[Sequence[int]] | None = None,
        max_offset: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_tasks, rounds_per_task, num_clients, seed, max_offset=max_offset, **kwargs)
        if orders is not None:
            ok = isinstance(orders, Sequence) and len(orders) == num_clients and all(
                isinstance(o, Sequence) and len(o) >= 1 and len(set(o)) == len(o)
                and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < num_tasks for t in o)
                for o in orders
            )
            if not ok:
                raise ConfigError("schedule.orders", orders,
                                  f"null or {num_clients} lists of distinct task ids in [0, {num_tasks - 1}]")
            self.orders = [[int(t) for t in o] for o in orders]
            return
        if order not in ORDERS:
            raise ConfigError("schedule.order", order, f"one of {list(ORDERS)}")
        f = task_fraction_per_client
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ConfigError("schedule.task_fraction_per_client", f, "a number in (0, 1]")
        k = max(1, math.ceil(float(f) * num_tasks - 1e-9))
        if k * num_clients < num_tasks:
            raise ConfigError("schedule.task_fraction_per_client", f,
                              f">= {num_tasks / num_clients:.3g}: {num_clients} clients x {k} tasks cannot "
                              f"cover {num_tasks} tasks")
        subsets = [np.sort(numpy_rng(self.seed, TAG_SUBSET, c).choice(num_tasks, size=k, replace=False))
                   for c in range(num_clients)]
        subsets = _cover_all(subsets, num_tasks, numpy_rng(self.seed, TAG_SUBSET, num_clients, 1))
        self.orders = []
        for c, sub in enumerate(subsets):
            seq = [int(t) for t in np.sort(sub)]
            if order == "shuffled":
                seq = [int(t) for t in numpy_rng(self.seed, TAG_ORDER, c).permutation(seq)]
            self.orders.append(seq)
        self.task_fraction_per_client = float(f)

    def sequence(self, client_id: int) -> list[int]:
        return list(self.orders[client_id])


def _cover_all(subsets: list[np.ndarray], num_tasks: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Swap uncovered tasks in for tasks held twice, so every task has a client (sizes unchanged)."""
    subsets = [s.copy() for s in subsets]
    for t in range(num_tasks):
        counts = np.bincount(np.concatenate(subsets), minlength=num_tasks)
        if counts[t]:
            continue
        # a task held by >= 2 clients exists whenever k * num_clients >= num_tasks
        donors = [(c, i) for c, s in enumerate(subsets) for i, u in enumerate(s) if counts[u] >= 2]
        c, i = donors[int(rng.integers(len(donors)))]
        subsets[c][i] = t
    return subsets
