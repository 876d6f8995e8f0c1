"""Client schedules: which task each client trains at each server round.

Every query the server and clients make (``task_at``, ``task_round``,
``is_last_round_of_task``, ``seen_tasks``, ``task_end_round``) is derived from one
clients x rounds *plan* (task id per round, -1 = idle). :class:`Schedule` is the
synchronous schedule (every client trains task ``t`` in rounds ``t*R+1 .. (t+1)*R``)
and the engine of the asynchronous scenarios: every client ``c`` has a *task
sequence* (which tasks, in which order; a task may come back) and an *offset*; it
trains the ``k``-th entry of its sequence in rounds ``offset_c + k*R + 1 ..
offset_c + (k+1)*R``. Two participation filters apply to every schedule:

* availability: client ``c`` trains only in rounds ``join_c .. leave_c`` (late
  joiners skip what passed before they joined; early leavers drop the rest);
* per-round client sampling (McMahan et al., AISTATS 2017): of the clients available
  in a round, ``max(min_clients, ceil(sample_fraction * available))`` are drawn,
  seeded by (seed, round).

A client that is not sampled is idle that round, so ``task_round`` counts rounds the
client really trained and ``is_last_round_of_task`` is its last trained round of the
task. Subclasses (one file each) override :meth:`Schedule.sequence` and/or
:meth:`Schedule.offset` only; everything is a function of the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcl.errors import ConfigError
from fedcl.seeding import TAG_SAMPLE, numpy_rng


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


class Schedule:
    """The synchronous schedule, and the engine every other schedule builds on.

    Each client trains its task sequence (all tasks in order, here) from its offset (0,
    here), within its availability window, when sampled.

    Parameters
    ----------
    num_tasks : int
        Number of tasks in the stream (>= 1).
    rounds_per_task : int
        Server rounds spent on each entry of a client's sequence (>= 1).
    num_clients : int, default 1
        Number of logical clients.
    seed : int, default 0
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
        num_clients: int = 1,
        seed: int = 0,
        *,
        join_rounds: Mapping[Any, Any] | None = None,
        leave_rounds: Mapping[Any, Any] | None = None,
        sample_fraction: float | None = None,
        min_clients: int = 1,
    ) -> None:
        if num_tasks < 1:
            raise ConfigError("stream.num_tasks", num_tasks, "an integer >= 1")
        if rounds_per_task < 1:
            raise ConfigError("federation.rounds_per_task", rounds_per_task, "an integer >= 1")
        if num_clients < 1:
            raise ConfigError("federation.num_clients", num_clients, "an integer >= 1")
        self.num_tasks = num_tasks
        self.rounds_per_task = rounds_per_task
        self.num_clients = num_clients
        self._client_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._global: tuple[np.ndarray, np.ndarray] | None = None
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
    def layout(self) -> np.ndarray:
        """clients x rounds task ids (-1 idle) before availability and sampling: each client's sequence from its
        offset, ``rounds_per_task`` rounds per entry (a subclass may lay the tasks out otherwise)."""
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
        return plans

    def _build(self) -> np.ndarray:
        """clients x rounds task ids (-1 idle): the layout, then availability, then sampling."""
        plans = self.layout()
        total = plans.shape[1]
        for c in range(self.num_clients):
            join, leave = self.join_rounds.get(c, 1), self.leave_rounds.get(c, total)
            plans[c, : join - 1] = -1
            plans[c, leave:] = -1
        if self.sample_fraction is not None:
            for r in range(total):
                avail = np.flatnonzero(plans[:, r] >= 0)
                k = min(len(avail), max(self.min_clients, math.ceil(self.sample_fraction * len(avail))))
                if k < len(avail):
                    keep = numpy_rng(self.seed, TAG_SAMPLE, r + 1).choice(avail, size=k, replace=False)
                    plans[np.setdiff1d(avail, keep), r] = -1
        missing = [t for t in range(self.num_tasks) if not (plans == t).any()]
        if missing:
            raise ConfigError(
                f"schedule ({self.name})", missing,
                "every task trained by some client: no client trains these tasks; widen join/leave rounds, "
                "raise sample_fraction or task_fraction_per_client, or lengthen the sequence",
            )
        return plans

    @property
    def total_rounds(self) -> int:
        """Rounds of the run: the plan decides (offsets, subsets, long sequences), not num_tasks * R."""
        return int(self.plans().shape[1])

    def plans(self) -> np.ndarray:
        """The whole clients x rounds plan (task id, -1 = idle); computed once."""
        if self._plans is None:
            self._plans = self._build()
        return self._plans

    def plan(self, client_id: int) -> np.ndarray:
        """Task id of each round (index = round - 1) for one client; -1 = idle."""
        return self.plans()[client_id]


    def _tables(self, client_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(task, round within task, last round of task) per round for one client, cached."""
        if not 0 <= client_id < self.num_clients:
            raise ConfigError("client_id", client_id, f"a logical client in [0, {self.num_clients - 1}]")
        if client_id not in self._client_cache:
            task = np.asarray(self.plan(client_id), dtype=np.int64)
            if task.shape != (self.total_rounds,):
                raise ValueError(f"plan({client_id}) has shape {task.shape}, expected ({self.total_rounds},)")
            # rounds already spent on the same task (cumulative, so a reoccurring task resumes its count)
            within = np.zeros_like(task)
            for t in np.unique(task[task >= 0]):
                on = task == t
                within[on] = np.arange(int(on.sum()))
            # last round of a task: the client's next active round trains another task, or there is none
            last = np.zeros(self.total_rounds, dtype=bool)
            active = np.flatnonzero(task >= 0)
            seq = task[active]
            last[active] = np.append(seq[1:] != seq[:-1], True)
            self._client_cache[client_id] = (task, within, last)
        return self._client_cache[client_id]

    def _global_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per task: the first round any client begins it and the last round any client trains it."""
        if self._global is None:
            first = np.full(self.num_tasks, np.iinfo(np.int64).max, dtype=np.int64)
            end = np.zeros(self.num_tasks, dtype=np.int64)
            rounds = np.arange(1, self.total_rounds + 1)
            for c in range(self.num_clients):
                task = self._tables(c)[0]
                for t in np.unique(task[task >= 0]):
                    on = rounds[task == t]
                    first[t] = min(first[t], on[0])
                    end[t] = max(end[t], on[-1])
            self._global = (first, end)
        return self._global

    def _index(self, server_round: int) -> int:
        if not 1 <= server_round <= self.total_rounds:
            raise ConfigError("server_round", server_round, f"a 1-based round in [1, {self.total_rounds}]")
        return server_round - 1

    def task_at(self, server_round: int, client_id: int) -> int | None:
        """The task a client trains at a 1-based round; None = idle (also past the last round)."""
        if server_round > self.total_rounds:
            return None
        t = int(self._tables(client_id)[0][self._index(server_round)])
        return None if t < 0 else t

    def _active(self, server_round: int, client_id: int) -> int:
        i = self._index(server_round)
        if self._tables(client_id)[0][i] < 0:
            raise ConfigError("client_id", client_id, f"a client active at round {server_round}")
        return i

    def task_round(self, server_round: int, client_id: int) -> int:
        """0-based count of the rounds this client has already trained its current task."""
        return int(self._tables(client_id)[1][self._active(server_round, client_id)])

    def is_last_round_of_task(self, server_round: int, client_id: int) -> bool:
        """Whether this client's next active round trains another task (or the run ends)."""
        return bool(self._tables(client_id)[2][self._active(server_round, client_id)])

    def seen_tasks(self, server_round: int) -> list[int]:
        """Tasks that any client has begun by this round (inclusive), ascending."""
        first = self._global_tables()[0]
        return [int(t) for t in np.flatnonzero(first <= server_round)]

    def global_task(self, server_round: int) -> int:
        """The newest task any client has begun by this round (0 before any client starts)."""
        seen = self.seen_tasks(server_round)
        return max(seen) if seen else 0

    def task_end_round(self, task_id: int) -> int:
        """The round in which the last client trains ``task_id`` (after it, the task is over for all)."""
        if not 0 <= task_id < self.num_tasks:
            raise ConfigError("task_id", task_id, f"an integer in [0, {self.num_tasks - 1}]")
        end = int(self._global_tables()[1][task_id])
        if end == 0:
            raise ConfigError("task_id", task_id, "a task that some client trains in this schedule")
        return end


def plan_matrix(schedule: Schedule) -> np.ndarray:
    """clients x rounds task ids (-1 idle) of any schedule (the synchronous one included)."""
    return schedule.plans()
