"""Per-client schedules: each client walks its own task sequence, from its own offset.

The synchronous :class:`~fedcl.data.schedule.Schedule` moves every client to the next
task at the same round. :class:`ClientSchedule` is the common engine of the
asynchronous scenarios: every client ``c`` has a *task sequence* (which tasks, in
which order; a task may come back) and an *offset*; it trains the ``k``-th entry of
its sequence in rounds ``offset_c + k*R + 1 .. offset_c + (k+1)*R``. On top of that
plan two participation filters apply to every scenario:

* availability: client ``c`` trains only in rounds ``join_c .. leave_c`` (late
  joiners skip what passed before they joined; early leavers drop the rest);
* per-round client sampling (McMahan et al., AISTATS 2017): of the clients available
  in a round, ``max(min_clients, ceil(sample_fraction * available))`` are drawn,
  seeded by (seed, round).

A client that is not sampled is idle that round, so ``task_round`` counts rounds the
client really trained and ``is_last_round_of_task`` is its last trained round of the
task. Subclasses override :meth:`sequence` and/or :meth:`offset` only; everything is
a function of the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcl.data.schedule import Schedule
from fedcl.errors import ConfigError

# Tags keep the random draws of the schedule independent of each other and of the stream's.
TAG_OFFSET, TAG_ORDER, TAG_SUBSET, TAG_REOCCUR, TAG_SAMPLE = 11, 12, 13, 14, 15


def schedule_rng(seed: int, *parts: int) -> np.random.Generator:
    """A generator seeded by (seed, parts...): one independent stream per use."""
    return np.random.default_rng([seed % 2**63, *parts])


def _client_rounds(spec: Mapping[Any, Any] | None, key: str, num_clients: int) -> dict[int, int]:
    """``{client: round}`` from a mapping whose keys may be strings (JSON / YAML)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"schedule.{key}", spec, "a mapping {client id: round}, e.g. {3: 5}")
    out: dict[int, int] = {}
    for c, r in spec.items():
        try:
            cid = int(c)
        except (TypeError, ValueError):
            raise ConfigError(f"schedule.{key}", spec, "integer client ids as keys") from None
        if not 0 <= cid < num_clients:
            raise ConfigError(f"schedule.{key}", spec, f"client ids in [0, {num_clients - 1}]")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ConfigError(f"schedule.{key}.{cid}", r, "a 1-based round >= 1")
        out[cid] = r
    return out


class ClientSchedule(Schedule):
    """Each client trains its own task sequence from its own offset, within its availability window.

    Parameters
    ----------
    num_tasks, rounds_per_task, num_clients : int
        As for :class:`~fedcl.data.schedule.Schedule`.
    seed : int
        Run seed; every random choice of the schedule derives from it.
    join_rounds : mapping | None, default None
        ``{client: first round it may train}``; others join at round 1.
    leave_rounds : mapping | None, default None
        ``{client: last round it may train}``; others stay to the end.
    sample_fraction : float | None, default None
        Fraction of the available clients trained per round; ``None`` = all.
    min_clients : int, default 1
        Lower bound of the per-round sample (capped at the available clients).
    """

    name = "synchronous"

    def __init__(
        self,
        num_tasks: int,
        rounds_per_task: int,
        num_clients: int,
        seed: int,
        *,
        join_rounds: Mapping[Any, Any] | None = None,
        leave_rounds: Mapping[Any, Any] | None = None,
        sample_fraction: float | None = None,
        min_clients: int = 1,
    ) -> None:
        super().__init__(num_tasks, rounds_per_task, num_clients)
        self.seed = int(seed)
        self.join_rounds = _client_rounds(join_rounds, "join_rounds", num_clients)
        self.leave_rounds = _client_rounds(leave_rounds, "leave_rounds", num_clients)
        for c, r in self.join_rounds.items():
            if r > self.leave_rounds.get(c, r):
                raise ConfigError(f"schedule.join_rounds.{c}", r, f"<= its leave round {self.leave_rounds[c]}")
        if sample_fraction is not None and (
            isinstance(sample_fraction, bool) or not isinstance(sample_fraction, (int, float))
            or not 0 < sample_fraction <= 1
        ):
            raise ConfigError("schedule.sample_fraction", sample_fraction, "null (all clients) or a number in (0, 1]")
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise ConfigError("schedule.min_clients", min_clients, "an integer >= 1")
        self.sample_fraction = None if sample_fraction is None else float(sample_fraction)
        self.min_clients = min_clients
        self._plans: np.ndarray | None = None

    # ---- what subclasses override ---------------------------------------------
    def sequence(self, client_id: int) -> list[int]:
        """The tasks a client trains, in order, ``rounds_per_task`` rounds each (all tasks here)."""
        return list(range(self.num_tasks))

    def offset(self, client_id: int) -> int:
        """Idle rounds before the client starts its sequence (0 here)."""
        return 0

    # ---- the joint plan ----------------------------------------------------------
    def _build(self) -> np.ndarray:
        """clients x rounds task ids (-1 idle): sequences, then availability, then sampling."""
        R = self.rounds_per_task
        seqs = [[int(t) for t in self.sequence(c)] for c in range(self.num_clients)]
        offs = [int(self.offset(c)) for c in range(self.num_clients)]
        for c, seq in enumerate(seqs):
            if any(not 0 <= t < self.num_tasks for t in seq):
                raise ValueError(f"sequence({c}) = {seq} names a task outside [0, {self.num_tasks - 1}]")
        total = max(o + len(s) * R for o, s in zip(offs, seqs, strict=True))
        plans = np.full((self.num_clients, total), -1, dtype=np.int64)
        for c, (seq, off) in enumerate(zip(seqs, offs, strict=True)):
            plans[c, off : off + len(seq) * R] = np.repeat(np.asarray(seq, dtype=np.int64), R)
            join, leave = self.join_rounds.get(c, 1), self.leave_rounds.get(c, total)
            plans[c, : join - 1] = -1
            plans[c, leave:] = -1
        if self.sample_fraction is not None:
            for r in range(total):
                avail = np.flatnonzero(plans[:, r] >= 0)
                k = min(len(avail), max(self.min_clients, math.ceil(self.sample_fraction * len(avail))))
                if k < len(avail):
                    keep = schedule_rng(self.seed, TAG_SAMPLE, r + 1).choice(avail, size=k, replace=False)
                    plans[np.setdiff1d(avail, keep), r] = -1
        missing = [t for t in range(self.num_tasks) if not (plans == t).any()]
        if missing:
            raise ConfigError(
                f"schedule ({self.name})", missing,
                "every task trained by some client: no client trains these tasks; widen join/leave rounds, "
                "raise sample_fraction or task_fraction_per_client, or lengthen the sequence",
            )
        return plans

    # the plan decides the length of the run (offsets, subsets, long sequences), not num_tasks * R
    @property  # type: ignore[override]
    def total_rounds(self) -> int:
        return int(self.plans().shape[1])

    @total_rounds.setter
    def total_rounds(self, value: int) -> None:
        pass  # Schedule.__init__ assigns num_tasks * R; the plan overrides it

    def plans(self) -> np.ndarray:
        """The whole clients x rounds plan (task id, -1 = idle); computed once."""
        if self._plans is None:
            self._plans = self._build()
        return self._plans

    def plan(self, client_id: int) -> np.ndarray:
        return self.plans()[client_id]


def plan_matrix(schedule: Schedule) -> np.ndarray:
    """clients x rounds task ids (-1 idle) of any schedule (the synchronous one included)."""
    if isinstance(schedule, ClientSchedule):
        return schedule.plans()
    return np.stack([schedule.plan(c) for c in range(schedule.num_clients)])
