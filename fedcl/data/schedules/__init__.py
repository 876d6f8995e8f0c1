"""Client schedules beyond the synchronous one; ``schedule=<name>`` picks one (simulations/conf/schedule).

Each scenario is one file: ``offsets`` (per-client task offsets), ``heterogeneous``
(per-client task orders and subsets) and ``reoccurrence`` (SCoLe-style long
sequences). Late joining, early leaving and per-round client sampling are options of
every schedule (:class:`ClientSchedule`). Blurry task boundaries change the data,
not the schedule: see ``stream.blurry`` (:mod:`fedcl.data.blurry`).
"""

from __future__ import annotations

from typing import Any

from fedcl.data.schedule import Schedule
from fedcl.data.schedules.base import ClientSchedule, plan_matrix
from fedcl.data.schedules.heterogeneous import HeterogeneousSchedule
from fedcl.data.schedules.offsets import OffsetSchedule
from fedcl.data.schedules.reoccurrence import ReoccurrenceSchedule
from fedcl.errors import ConfigError

SCHEDULE_CLASSES: dict[str, type[ClientSchedule]] = {
    "synchronous": ClientSchedule,
    "offsets": OffsetSchedule,
    "heterogeneous": HeterogeneousSchedule,
    "reoccurrence": ReoccurrenceSchedule,
}
# options every schedule accepts; the plain synchronous Schedule is used when all are at their default
COMMON_DEFAULTS: dict[str, Any] = {"join_rounds": None, "leave_rounds": None, "sample_fraction": None,
                                   "min_clients": 1}


def make_schedule(
    schedule_cfg: dict[str, Any], num_tasks: int, rounds_per_task: int, num_clients: int, seed: int
) -> Schedule:
    """The schedule named by ``schedule_cfg['name']`` with the group's other keys as arguments.

    ``synchronous`` with no join/leave/sampling option returns the plain
    :class:`Schedule`, so synchronous runs are exactly what they were.
    """
    params = {k: v for k, v in schedule_cfg.items() if k != "name"}
    name = schedule_cfg.get("name") or "synchronous"
    if not isinstance(name, str) or name not in SCHEDULE_CLASSES:
        raise ConfigError("schedule.name", name, f"one of {sorted(SCHEDULE_CLASSES)}")
    if name == "synchronous" and all(params.get(k, d) in (d, {}) for k, d in COMMON_DEFAULTS.items()):
        extra = set(params) - set(COMMON_DEFAULTS)
        if extra:
            raise ConfigError("schedule", sorted(extra), "no other keys for schedule=synchronous")
        return Schedule(num_tasks, rounds_per_task, num_clients)
    try:
        return SCHEDULE_CLASSES[name](num_tasks, rounds_per_task, num_clients, seed, **params)
    except TypeError as exc:
        raise ConfigError(f"schedule ({name})", sorted(params), f"known keys only: {exc}") from exc


def validate_schedule(cfg: dict[str, Any]) -> None:
    """Build the schedule of a resolved config once, so a bad option fails before any process starts."""
    sched = make_schedule(dict(cfg["schedule"]), int(cfg["stream"]["num_tasks"]),
                          int(cfg["federation"]["rounds_per_task"]), int(cfg["federation"]["num_clients"]),
                          int(cfg["seed"]))
    if isinstance(sched, ClientSchedule):
        sched.plans()


__all__ = [
    "SCHEDULE_CLASSES",
    "ClientSchedule",
    "HeterogeneousSchedule",
    "OffsetSchedule",
    "ReoccurrenceSchedule",
    "make_schedule",
    "plan_matrix",
    "validate_schedule",
]
