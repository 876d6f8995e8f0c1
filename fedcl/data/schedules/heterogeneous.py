"""Heterogeneous task orders and task subsets: each client sees the tasks its own way."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcl.data.schedules.offsets import OffsetSchedule
from fedcl.errors import ConfigError
from fedcl.seeding import TAG_ORDER, TAG_SUBSET, TAG_TASK_CLIENTS, numpy_rng

ORDERS = ("same", "shuffled")
LAYOUTS = ("packed", "lockstep")


class HeterogeneousSchedule(OffsetSchedule):
    """Per-client task orders (FedWeIT-style) and per-client task subsets (FOT's heterogeneous variant).

    Yoon et al., "Federated Continual Learning with Weighted Inter-client Transfer",
    ICML 2021, give every client its own task sequence; Bakman et al., "Federated
    Orthogonal Training", ICLR 2024, let each client see only part of the tasks.

    ``layout: packed`` (the default): client ``c`` keeps ``ceil(task_fraction_per_client *
    num_tasks)`` tasks (a seeded subset; every task is kept by at least one client) in its
    own seeded order (``order: shuffled``) or in stream order (``order: same``), back to
    back from round 1, so different tasks can train in the same round. Offsets compose as
    in :class:`OffsetSchedule`.

    ``layout: lockstep`` is FOT's heterogeneous set-up (the official
    ``data_preprocess/mnist/data_loader.py``: each task draws ``client_num_in_total`` of
    ``client_num_in_total / task_pct_per_client`` clients): the tasks stay in lockstep
    (task ``t`` in rounds ``t*R+1 .. (t+1)*R``, stream order, ``order`` unused) and each task
    is trained by its own seeded random subset of ``max(1, round(task_fraction_per_client *
    num_clients))`` clients; the others sit idle. With ``orders`` a client trains the tasks
    its list names, each in that task's rounds. No offsets. Unlike the official code, which
    splits a task's data over its chosen clients only, the stream still splits every task
    over all ``num_clients`` clients, so the idle clients' shares go untrained.

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
        Per-client offsets drawn in ``[0, max_offset]`` (none by default; ``packed`` only).
    layout : str, default "packed"
        ``packed`` (each client's tasks back to back) or ``lockstep`` (FOT's: every task in its
        own rounds, trained by a random subset of the clients).
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
        layout: str = "packed",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_tasks, rounds_per_task, num_clients, seed, max_offset=max_offset, **kwargs)
        if layout not in LAYOUTS:
            raise ConfigError("schedule.layout", layout, f"one of {list(LAYOUTS)}")
        if layout == "lockstep" and any(self.offsets):
            key = "schedule.max_offset" if kwargs.get("offsets") is None else "schedule.offsets"
            raise ConfigError(key, kwargs.get("offsets") or max_offset,
                              "no offsets under schedule.layout=lockstep (every task keeps its own rounds)")
        self.layout_name = layout
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
        self.task_fraction_per_client = float(f)
        if layout == "lockstep":
            self.orders = _task_clients(float(f), num_tasks, num_clients, self.seed)
            return
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

    def sequence(self, client_id: int) -> list[int]:
        return list(self.orders[client_id])

    def layout(self) -> np.ndarray:
        """``packed``: the sequences back to back (:meth:`Schedule.layout`); ``lockstep``: task ``t`` in its rounds."""
        if self.layout_name == "packed":
            return super().layout()
        R = self.rounds_per_task
        plans = np.full((self.num_clients, self.num_tasks * R), -1, dtype=np.int64)
        for c, tasks in enumerate(self.orders):
            for t in tasks:
                plans[c, t * R : (t + 1) * R] = t
        return plans


def _task_clients(fraction: float, num_tasks: int, num_clients: int, seed: int) -> list[list[int]]:
    """Lockstep: each task's own seeded draw of ``max(1, round(fraction * num_clients))`` clients, as task lists."""
    size = max(1, round(fraction * num_clients))
    holders = [set(numpy_rng(seed, TAG_TASK_CLIENTS, t).choice(num_clients, size=size, replace=False).tolist())
               for t in range(num_tasks)]
    return [[t for t in range(num_tasks) if c in holders[t]] for c in range(num_clients)]


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
