"""Joint (cumulative) upper bound: barely forgets on the toy stream; no state to carry."""

from __future__ import annotations

from fedcl.methods import build_method
from tests.fedcl.methods.toy import run_two_tasks


def test_joint_forgets_far_less_than_naive() -> None:
    for seed in (0, 1):
        naive = run_two_tasks(lambda: build_method({"naive": {}}), seed=seed)
        joint = run_two_tasks(lambda: build_method({"joint": {}}), seed=seed)
        assert joint.forgetting < naive.forgetting - 0.3
        assert joint.acc1_after_task1 > 0.85


def test_joint_state_is_empty() -> None:
    assert build_method({"joint": {}}).state_dict() == {}
