"""Per-client task offsets: client ``c`` starts task ``t`` at round ``t*R + offset_c + 1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedcl.data.schedules.base import Schedule
from fedcl.errors import ConfigError
from fedcl.seeding import TAG_OFFSET, numpy_rng


class OffsetSchedule(Schedule):
    """Clients move through the same task order, each shifted by its own offset.

    Real federations do not switch tasks in lockstep: in the same round some
    clients are still on task ``t`` while others are on ``t+1``. Offsets are either
    given per client or drawn uniformly from ``0 .. max_offset`` (seeded). The run
    lasts ``num_tasks*R + max(offsets)`` rounds.

    Parameters
    ----------
    num_tasks, rounds_per_task, num_clients, seed : int
        As for :class:`~fedcl.data.schedules.base.Schedule`.
    offsets : sequence of int | None, default None
        One offset (rounds, >= 0) per client; overrides ``max_offset``.
    max_offset : int, default 2
        Offsets drawn uniformly in ``[0, max_offset]`` when ``offsets`` is None.
    **kwargs
        Availability and sampling options of :class:`~fedcl.data.schedules.base.Schedule`.
    """

    name = "offsets"

    def __init__(
        self,
        num_tasks: int,
        rounds_per_task: int,
        num_clients: int,
        seed: int,
        *,
        offsets: Sequence[int] | None = None,
        max_offset: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_tasks, rounds_per_task, num_clients, seed, **kwargs)
        if offsets is not None:
            if (
                not isinstance(offsets, Sequence) or isinstance(offsets, str) or len(offsets) != num_clients
                or any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in offsets)
            ):
                raise ConfigError("schedule.offsets", offsets, f"null or a list of {num_clients} integers >= 0")
            self.offsets = [int(o) for o in offsets]
        else:
            if isinstance(max_offset, bool) or not isinstance(max_offset, int) or max_offset < 0:
                raise ConfigError("schedule.max_offset", max_offset, "an integer >= 0 (rounds)")
            draw = numpy_rng(self.seed, TAG_OFFSET).integers(0, max_offset + 1, size=num_clients)
            self.offsets = [int(o) for o in draw]

    def offset(self, client_id: int) -> int:
        return self.offsets[client_id]
