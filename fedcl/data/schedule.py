"""Client schedules: which task each client trains at each server round.

The base :class:`Schedule` is synchronous (every client moves to the next task at
the same round). Every query is derived from one per-client *plan* (the task id of
each round, -1 = idle), so an asynchronous schedule (per-client offsets, blurry
boundaries, reoccurring tasks, late joiners) only overrides :meth:`Schedule.plan`
and, if it changes the length of the run, ``total_rounds``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcl.errors import ConfigError

SCHEDULES = ("synchronous",)  # federation.schedule (legacy key); the schedule= group has them all


class Schedule:
    """Synchronous task schedule: all clients train task ``t`` in rounds ``t*R+1 .. (t+1)*R``.

    Parameters
    ----------
    num_tasks : int
        Number of tasks in the stream (>= 1).
    rounds_per_task : int
        Server rounds spent on each task (>= 1).
    num_clients : int, default 1
        Number of clients; global queries (``global_task``, ``seen_tasks``,
        ``task_end_round``) scan all of them. The synchronous plan is the same for
        every client, so 1 is exact for it.
    """

    def __init__(self, num_tasks: int, rounds_per_task: int, num_clients: int = 1) -> None:
        if num_tasks < 1:
            raise ConfigError("stream.num_tasks", num_tasks, "an integer >= 1")
        if rounds_per_task < 1:
            raise ConfigError("federation.rounds_per_task", rounds_per_task, "an integer >= 1")
        if num_clients < 1:
            raise ConfigError("federation.num_clients", num_clients, "an integer >= 1")
        self.num_tasks = num_tasks
        self.rounds_per_task = rounds_per_task
        self.num_clients = num_clients
        self.total_rounds = num_tasks * rounds_per_task
        self._client_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._global: tuple[np.ndarray, np.ndarray] | None = None

    def plan(self, client_id: int) -> np.ndarray:
        """Task id of each round (index = round - 1) for one client; -1 = idle. Subclasses override this."""
        return np.repeat(np.arange(self.num_tasks), self.rounds_per_task)

    def _tables(self, client_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(task, round within task, last round of task) per round for one client, cached."""
        if client_id < 0:
            raise ConfigError("client_id", client_id, "an integer >= 0")
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


def build_schedule(
    federation_cfg: dict[str, Any],
    num_tasks: int,
    num_clients: int,
    seed: int,
    schedule_cfg: dict[str, Any] | None = None,
) -> Schedule:
    """The schedule of a run from the ``federation`` config group.

    Parameters
    ----------
    federation_cfg : dict
        Needs ``rounds_per_task``; an optional ``schedule`` key picks the kind
        (only ``"synchronous"`` so far).
    num_tasks : int
        Tasks in the stream.
    num_clients : int
        Logical clients.
    seed : int
        Run seed, for schedules with random offsets (unused by the synchronous one).
    schedule_cfg : dict | None, default None
        The ``schedule`` config group (``name`` + options, see
        ``simulations/conf/schedule`` and :mod:`fedcl.data.schedules`); None or
        ``name: synchronous`` without options = the synchronous schedule.

    Returns
    -------
    Schedule
        The schedule; its methods are the whole interface the server and clients use.
    """
    kind = federation_cfg.get("schedule") or "synchronous"
    if kind not in SCHEDULES:
        raise ConfigError("federation.schedule", kind, f"one of {list(SCHEDULES)}")
    rpt = federation_cfg.get("rounds_per_task")
    if isinstance(rpt, bool) or not isinstance(rpt, int):
        raise ConfigError("federation.rounds_per_task", rpt, "an integer >= 1")
    if schedule_cfg is not None:
        from fedcl.data.schedules import make_schedule  # the asynchronous engines build on this module

        return make_schedule(schedule_cfg, num_tasks, rpt, num_clients, seed)
    return Schedule(num_tasks, rpt, num_clients)
