"""Joint (cumulative) upper bound: barely forgets on the toy stream; no state to carry."""

from __future__ import annotations

from fedcl.methods import build_method
from tests.fedcl.methods.toy import run_two_tasks


def test_joint_forgets_far_less_than_naive() -> None:
    for seed in (0, 1):
        naive = run_two_tasks(lambda: build_method("naive"), seed=seed)
        joint = run_two_tasks(lambda: build_method("joint"), seed=seed)
        assert joint.forgetting < naive.forgetting - 0.3
        assert joint.acc1_after_task1 > 0.85


def test_joint_state_is_empty() -> None:
    assert build_method("joint").state_dict() == {}


def _joint_ctx(task: int, multi_head: bool = False):  # noqa: ANN202
    from tests.fedcl.methods.toy import make_ctx, make_model, toy_task

    x, y = toy_task(task, 8, seed=0)
    return make_ctx(make_model(0), task, x, y, seen_tasks=list(range(task + 1)), multi_head=multi_head,
                    task_data=lambda t: toy_task(t, 20, seed=1))


def test_each_batch_gets_replay_ratio_times_as_many_past_samples() -> None:
    method = build_method("joint", {"replay_ratio": 0.5})
    ctx = _joint_ctx(1)
    bx, by = method.adapt_batch(ctx.x, ctx.y, ctx)
    assert bx.shape[0] == 8 + 4 and set(by[8:].tolist()) <= {0, 1}
    past_x, _ = ctx.task_data(0)  # type: ignore[misc]
    for xi in bx[8:]:
        assert (past_x == xi).all(dim=1).any()
    # the first task has no past; multi-head streams train per task
    first = _joint_ctx(0)
    assert build_method("joint").adapt_batch(first.x, first.y, first)[0] is first.x
    mh = _joint_ctx(1, multi_head=True)
    assert build_method("joint").adapt_batch(mh.x, mh.y, mh)[0] is mh.x
    tiny = build_method("joint", {"replay_ratio": 0.01})
    assert tiny.adapt_batch(ctx.x, ctx.y, ctx)[0].shape[0] == 9  # at least one past sample
