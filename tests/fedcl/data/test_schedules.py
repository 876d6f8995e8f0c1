"""Asynchronous schedules: offsets, heterogeneous orders/subsets, reoccurrence, join/leave, sampling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedcl.config import compose
from fedcl.data import Schedule
from fedcl.data.schedules import make_schedule, plan_matrix
from fedcl.errors import ConfigError


def _make(name: str, num_tasks: int = 3, rpt: int = 2, clients: int = 4, seed: int = 0, **kw: Any) -> Schedule:
    return make_schedule({"name": name, **kw}, num_tasks, rpt, clients, seed)


def test_synchronous_group_default_is_the_plain_schedule() -> None:
    # Prepare
    cfg = compose(["federation.num_clients=3"])
    # Execute
    sched = make_schedule(cfg.schedule, 5, 3, 3, 0)
    # Assert: the synchronous plan, every client on task t in rounds t*R+1 .. (t+1)*R
    assert type(sched) is Schedule
    assert np.array_equal(plan_matrix(sched), np.repeat(np.arange(5), 3)[None, :].repeat(3, axis=0))


def test_fixed_offsets_respected() -> None:
    # Prepare
    offsets = [0, 1, 3]
    # Execute
    sched = _make("offsets", clients=3, offsets=offsets)
    # Assert: client c starts task t at round t*R + offset_c + 1, idle before
    assert sched.total_rounds == 3 * 2 + 3
    for c, off in enumerate(offsets):
        for t in range(3):
            assert sched.task_at(t * 2 + off + 1, c) == t
        assert all(sched.task_at(r, c) is None for r in range(1, off + 1))
    assert sched.task_end_round(0) == 2 + 3 and sched.seen_tasks(2) == [0] and sched.seen_tasks(3) == [0, 1]


def test_random_offsets_bounded_and_seeded() -> None:
    # Prepare / Execute
    a = _make("offsets", clients=20, max_offset=4, seed=1)
    b = _make("offsets", clients=20, max_offset=4, seed=1)
    c = _make("offsets", clients=20, max_offset=4, seed=2)
    # Assert
    assert isinstance(a, Schedule) and isinstance(c, Schedule)
    offs = [a.offset(i) for i in range(20)]  # type: ignore[attr-defined]
    assert all(0 <= o <= 4 for o in offs) and len(set(offs)) > 1
    assert np.array_equal(a.plans(), b.plans()) and not np.array_equal(a.plans(), c.plans())


def test_heterogeneous_orders_are_permutations_and_subsets_cover_all_tasks() -> None:
    # Prepare / Execute
    perm = _make("heterogeneous", num_tasks=5, clients=6, seed=3, order="shuffled")
    sub = _make("heterogeneous", num_tasks=5, clients=3, seed=3, task_fraction_per_client=0.4, order="same")
    # Assert
    seqs = [perm.sequence(c) for c in range(6)]  # type: ignore[attr-defined]
    assert all(sorted(s) == list(range(5)) for s in seqs) and len({tuple(s) for s in seqs}) > 1
    subs = [sub.sequence(c) for c in range(3)]  # type: ignore[attr-defined]
    assert all(len(s) == 2 and s == sorted(s) for s in subs)
    assert set().union(*subs) == set(range(5))  # 3 clients x 2 tasks cover all 5
    assert sub.total_rounds == 2 * 2


def test_heterogeneous_lockstep_keeps_tasks_in_their_rounds_with_a_client_subset_each() -> None:
    # Prepare: 4 tasks x 3 rounds, 10 clients, 40 % of the clients per task (FOT's heterogeneous set-up)
    kw: dict[str, Any] = {"num_tasks": 4, "rpt": 3, "clients": 10, "seed": 5, "task_fraction_per_client": 0.4}
    # Execute
    lock = _make("heterogeneous", layout="lockstep", **kw)
    packed = _make("heterogeneous", **kw)
    # Assert: task t only in rounds t*R+1 .. (t+1)*R, by the same 4 clients in each of them, the others idle
    plan = plan_matrix(lock)
    assert lock.total_rounds == 4 * 3
    holders = []
    for t in range(4):
        block = plan[:, t * 3 : (t + 1) * 3]
        assert set(np.unique(block)) <= {-1, t}
        assert (block == block[:, :1]).all()  # a client trains the whole task or none of it
        holders.append(frozenset(np.flatnonzero(block[:, 0] == t).tolist()))
        assert len(holders[-1]) == 4
    assert len(set(holders)) > 1  # each task draws its own clients
    assert all(lock.sequence(c) == sorted(lock.sequence(c)) for c in range(10))  # type: ignore[attr-defined]
    # today's mode keeps its name: each client's tasks back to back, so two tasks can share a round
    assert packed.total_rounds == 2 * 3
    assert any(len(set(plan_matrix(packed)[:, r]) - {-1}) > 1 for r in range(packed.total_rounds))


def test_heterogeneous_lockstep_with_explicit_orders_and_through_compose() -> None:
    # Prepare / Execute: explicit task lists keep each task in its own rounds
    sched = _make("heterogeneous", num_tasks=3, rpt=2, clients=3, layout="lockstep", orders=[[2, 0], [1], [0]])
    cfg = compose(["schedule=heterogeneous", "schedule.layout=lockstep", "schedule.task_fraction_per_client=0.5"])
    # Assert
    assert np.array_equal(plan_matrix(sched), [[0, 0, -1, -1, 2, 2], [-1, -1, 1, 1, -1, -1], [0, 0, -1, -1, -1, -1]])
    assert cfg.schedule["layout"] == "lockstep"
    built = make_schedule(cfg.schedule, 4, 2, 6, 0)
    assert (plan_matrix(built) >= 0).sum(axis=0).tolist() == [3] * 8  # round(0.5 * 6) clients in every round


def test_reoccurrence_frequency_follows_weights() -> None:
    # Prepare
    weights = [0.6, 0.3, 0.1]
    # Execute
    sched = _make("reoccurrence", rpt=1, clients=1, length=3003, weights=weights, seed=5)
    # Assert: first pass visits 0, 1, 2; the draws after it follow the weights
    seq = sched.sequence(0)  # type: ignore[attr-defined]
    assert seq[:3] == [0, 1, 2] and len(seq) == 3003 and sched.total_rounds == 3003
    freq = np.bincount(seq[3:], minlength=3) / 3000
    assert np.allclose(freq, weights, atol=0.03)
    assert sched.task_end_round(2) > 3  # task 2 comes back after the first pass


def test_join_and_leave_rounds_honoured() -> None:
    # Prepare / Execute
    sched = _make("synchronous", clients=3, join_rounds={"1": 3}, leave_rounds={2: 4})
    # Assert
    plan = plan_matrix(sched)
    assert (plan[1, :2] == -1).all() and plan[1, 2] == 1  # joins at round 3, on task 1 as everyone
    assert (plan[2, 4:] == -1).all() and plan[2, 3] == 1  # leaves after round 4
    assert np.array_equal(plan[0], [0, 0, 1, 1, 2, 2])
    assert sched.task_round(3, 1) == 0 and sched.is_last_round_of_task(4, 2)


def test_sampling_fraction_and_minimum() -> None:
    # Prepare / Execute
    sched = _make("synchronous", num_tasks=2, rpt=5, clients=10, sample_fraction=0.25, min_clients=3, seed=7)
    again = _make("synchronous", num_tasks=2, rpt=5, clients=10, sample_fraction=0.25, min_clients=3, seed=7)
    # Assert: max(3, ceil(0.25 * 10)) = 3 clients each round, the same draw for the same seed
    active = (plan_matrix(sched) >= 0).sum(axis=0)
    assert (active == 3).all()
    assert np.array_equal(plan_matrix(sched), plan_matrix(again))


def test_bad_options_name_the_key() -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="schedule.offsets"):
        _make("offsets", clients=3, offsets=[1, 2])
    with pytest.raises(ConfigError, match="task_fraction_per_client"):
        _make("heterogeneous", num_tasks=6, clients=2, task_fraction_per_client=0.2)
    with pytest.raises(ConfigError, match="schedule.name"):
        _make("lockstep")
    with pytest.raises(ConfigError, match="every task trained"):
        _make("synchronous", clients=1, leave_rounds={0: 2}).total_rounds  # noqa: B018
    with pytest.raises(ConfigError, match="schedule.offsets"):
        compose(["schedule=offsets", "federation.num_clients=2", "schedule.offsets=[0]"])
    with pytest.raises(ConfigError, match="schedule.layout"):
        compose(["schedule=heterogeneous", "schedule.layout=staggered"])
    with pytest.raises(ConfigError, match="schedule.max_offset"):
        _make("heterogeneous", layout="lockstep", max_offset=2, seed=1)
    with pytest.raises(ConfigError, match="schedule.offsets"):
        _make("heterogeneous", clients=3, layout="lockstep", offsets=[0, 1, 0])


@pytest.mark.parametrize(("name", "kw"), [
    ("heterogeneous", {"order": "shuffled"}),
    ("heterogeneous", {"order": "same", "task_fraction_per_client": 0.4}),
    ("heterogeneous", {"layout": "lockstep", "task_fraction_per_client": 0.5}),
    ("reoccurrence", {"length": 40, "weights": [0.4, 0.3, 0.1, 0.1, 0.1]}),
    ("offsets", {"max_offset": 3}),
])
def test_every_random_schedule_is_a_function_of_the_seed(name: str, kw: dict[str, Any]) -> None:
    # Prepare / Execute: the same options with seeds 11, 11 and 12
    a, b, c = (_make(name, num_tasks=5, clients=8, seed=s, **kw) for s in (11, 11, 12))
    # Assert: the same seed gives the same plan (clients x rounds), another seed another plan
    assert np.array_equal(plan_matrix(a), plan_matrix(b))
    assert not np.array_equal(plan_matrix(a), plan_matrix(c))
