"""Client schedules: ``schedule=<name>`` picks one (``simulations/conf/schedule``), one file each.

``synchronous`` (the default, :class:`Schedule`), ``offsets`` (per-client task offsets),
``heterogeneous`` (per-client task orders and subsets) and ``reoccurrence`` (SCoLe-style
long sequences). Late joining, early leaving and per-round client sampling are options
of every schedule. Blurry task boundaries change the data, not the schedule: see
``stream.blurry`` (:mod:`fedcl.data.blurry`).
"""

from __future__ import annotations

from typing import Any

from fedcl.data.schedules.base import Schedule, plan_matrix
from fedcl.registry import Registry

SCHEDULES: Registry[Schedule] = Registry("schedule.name", {
    "synchronous": "fedcl.data.schedules.base:Schedule",
    "offsets": "fedcl.data.schedules.offsets:OffsetSchedule",
    "heterogeneous": "fedcl.data.schedules.heterogeneous:HeterogeneousSchedule",
    "reoccurrence": "fedcl.data.schedules.reoccurrence:ReoccurrenceSchedule",
})
# the arguments every schedule takes from the run rather than from its config group
SCHEDULE_ARGS = ("num_tasks", "rounds_per_task", "num_clients", "seed")


def make_schedule(
    schedule: dict[str, Any], num_tasks: int, rounds_per_task: int, num_clients: int, seed: int
) -> Schedule:
    """The schedule of a validated ``schedule`` group (``name`` + the class's options)."""
    params = {k: v for k, v in schedule.items() if k != "name"}
    return SCHEDULES.get(str(schedule["name"]))(num_tasks, rounds_per_task, num_clients, seed, **params)


__all__ = ["SCHEDULES", "SCHEDULE_ARGS", "Schedule", "make_schedule", "plan_matrix"]
