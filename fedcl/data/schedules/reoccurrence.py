"""Task reoccurrence: a long sequence of tasks drawn from the stream's pool, tasks come back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcl.data.schedules.offsets import OffsetSchedule
from fedcl.errors import ConfigError
from fedcl.seeding import TAG_REOCCUR, numpy_rng


class ReoccurrenceSchedule(OffsetSchedule):
    """A long task sequence drawn from the pool of the stream's tasks (SCoLe).

    Lesort et al., "Challenging Common Assumptions about Catastrophic Forgetting
    and Knowledge Accumulation", CoLLAs 2023 (SCoLe): tasks are drawn again and
    again from a fixed pool, so each comes back with a frequency set by its draw
    probability. The sequence has ``length`` segments of ``rounds_per_task`` rounds;
    with ``first_pass`` the first ``num_tasks`` segments visit every task once in
    stream order (every task then has a row in the accuracy matrix), the rest are
    drawn i.i.d. with probabilities ``weights`` (uniform when null). ``per_client``
    gives each client its own draw; offsets compose as in :class:`OffsetSchedule`.

    Parameters
    ----------
    num_tasks, rounds_per_task, num_clients, seed : int
        As for :class:`~fedcl.data.schedules.base.Schedule`.
    length : int
        Segments in the sequence (>= num_tasks with ``first_pass``).
    weights : sequence of float | None, default None
        Draw probability of each task (normalised); None = uniform.
    first_pass : bool, default True
        Start with every task once, in order.
    per_client : bool, default False
        One draw per client instead of one shared sequence.
    max_offset : int, default 0
        Per-client offsets drawn in ``[0, max_offset]`` (none by default).
    **kwargs
        Offsets, availability and sampling options.
    """

    name = "reoccurrence"

    def __init__(
        self,
        num_tasks: int,
        rounds_per_task: int,
        num_clients: int,
        seed: int,
        *,
        length: int = 12,
        weights: Sequence[float] | None = None,
        first_pass: bool = True,
        per_client: bool = False,
        max_offset: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_tasks, rounds_per_task, num_clients, seed, max_offset=max_offset, **kwargs)
        lo = num_tasks if first_pass else 1
        if isinstance(length, bool) or not isinstance(length, int) or length < lo:
            raise ConfigError("schedule.length", length, f"an integer >= {lo} (segments of rounds_per_task rounds)")
        if weights is None:
            p = np.full(num_tasks, 1.0 / num_tasks)
        else:
            w = np.asarray(weights, dtype=float) if isinstance(weights, Sequence) else np.zeros(0)
            if w.shape != (num_tasks,) or (w < 0).any() or w.sum() <= 0:
                raise ConfigError("schedule.weights", weights, f"null or {num_tasks} numbers >= 0, not all 0")
            p = w / w.sum()
        self.length, self.weights, self.first_pass, self.per_client = length, p, bool(first_pass), bool(per_client)
        self._shared = self._draw(None)

    def _draw(self, client_id: int | None) -> list[int]:
        """One sequence (shared: ``client_id`` None): the first pass (if any), then i.i.d. draws."""
        head = list(range(self.num_tasks)) if self.first_pass else []
        rng = numpy_rng(self.seed, TAG_REOCCUR) if client_id is None else numpy_rng(
            self.seed, TAG_REOCCUR, client_id)
        tail = rng.choice(self.num_tasks, size=self.length - len(head), p=self.weights)
        return head + [int(t) for t in tail]

    def sequence(self, client_id: int) -> list[int]:
        return self._draw(client_id) if self.per_client else list(self._shared)
