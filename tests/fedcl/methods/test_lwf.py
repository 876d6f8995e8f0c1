"""Learning without Forgetting: teacher snapshot, forgetting (task-incremental), state round trip."""

from __future__ import annotations

import pytest
import torch

from fedcl.methods.lwf import LwF
from fedcl.models import MLP
from tests.fedcl.methods.baselines import naive_multi_head, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx
from tests.fedcl.methods.toy_multihead import run_two_tasks_multi_head


def test_teacher_is_the_model_at_the_start_of_the_task() -> None:
    _, method = run_capture(LwF, {}, seed=0)
    assert isinstance(method, LwF)
    assert method.old_tasks == [0] and method.task_classes == {0: [0, 1], 1: [2, 3]}
    assert method.old_weights and all(v.device.type == "cpu" for v in method.old_weights.values())


def test_no_distillation_on_the_first_task() -> None:
    method = LwF(alpha=1.0)
    base = torch.tensor(1.5)
    assert method.loss(torch.zeros(2, 4), torch.zeros(2), base, None) is base  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1])
def test_lwf_forgets_less_than_naive_task_incremental(seed: int) -> None:
    # LwF protects old heads' outputs; in class-incremental single-head learning it is known
    # not to prevent forgetting (van de Ven et al., 2019), so the check is task-incremental
    naive = naive_multi_head(seed)
    lwf = run_two_tasks_multi_head(lambda: LwF(alpha=5.0, temperature=2.0), seed=seed)
    assert lwf.forgetting < naive.forgetting - 0.15
    assert lwf.acc1_after_task1 > 0.85


def test_lwf_state_round_trip() -> None:
    _, method = run_capture(LwF, {}, seed=0)
    restored = LwF()
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


def _lwf_after_first_task(multi_head: bool, alpha: float = 2.0, t: float = 2.0):  # noqa: ANN202
    torch.manual_seed(0)
    model = MLP((8,), 4, hidden=[5], num_heads=2 if multi_head else 1)
    method = LwF(alpha=alpha, temperature=t)
    x0 = torch.randn(6, 8)
    c0 = make_ctx(model, 0, x0, torch.zeros(6, dtype=torch.long), multi_head=multi_head)
    method.before_task(c0)
    assert method.old_weights == {}  # nothing to distil on the first task
    teacher = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x1 = torch.randn(5, 8)
    c1 = make_ctx(model, 1, x1, torch.full((5,), 2), seen_tasks=[0, 1], multi_head=multi_head, batch_x=x1)
    method.before_task(c1)
    with torch.no_grad():  # the student moves away from the teacher
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return method, model, teacher, x1, c1


@pytest.mark.parametrize("multi_head", [False, True])
def test_distillation_loss_by_hand(multi_head: bool) -> None:
    method, model, teacher_state, x1, ctx = _lwf_after_first_task(multi_head)
    teacher = MLP((8,), 4, hidden=[5], num_heads=2 if multi_head else 1)
    teacher.load_state_dict(teacher_state)
    logits = model(x1, 1) if multi_head else model(x1)
    base = torch.tensor(0.7)
    # Execute
    got = method.loss(logits, torch.full((5,), 2), base, ctx)
    # Assert: alpha T^2 KL(softmax(z_old / T) || softmax(z / T)) on the old task's classes {0, 1}
    zs = model(x1, 0)[:, :2] if multi_head else logits[:, :2]
    zt = (teacher(x1, 0) if multi_head else teacher(x1))[:, :2].detach()
    p_t = torch.softmax(zt / 2.0, 1)
    kl = (p_t * (torch.log_softmax(zt / 2.0, 1) - torch.log_softmax(zs / 2.0, 1))).sum(1).mean()
    torch.testing.assert_close(got, base + 2.0 * 4.0 * kl)
    assert float(kl.detach()) > 1e-4
    assert method.old_tasks == [0] and method.task_classes == {0: [0, 1], 1: [2, 3]}


def test_domain_incremental_distils_every_class_and_alpha_zero_is_plain() -> None:
    method, model, _, x1, ctx = _lwf_after_first_task(False)
    method.task_classes[1] = [0, 1]  # the new task has the same classes as the old one
    ctx.task_classes = [0, 1]
    logits = model(x1)
    base = torch.tensor(0.7)
    assert float(method.loss(logits, torch.zeros(5, dtype=torch.long), base, ctx).detach()) > 0.7
    method.alpha = 0.0
    assert method.loss(logits, torch.zeros(5, dtype=torch.long), base, ctx) is base


def test_blurry_tasks_distil_only_the_classes_the_current_task_does_not_hold() -> None:
    # Prepare: task 0 held classes {0, 1}, task 1 holds {1, 2}: class 1 is learnt again from labels
    method, model, _, x1, ctx = _lwf_after_first_task(False)
    ctx.task_classes = [1, 2]
    logits = model(x1)
    base = torch.tensor(0.7)
    with_both = LwF(alpha=2.0, temperature=2.0)
    with_both.load_state_dict(method.state_dict())
    # Execute
    got = method.loss(logits, torch.full((5,), 2), base, ctx)
    # Assert: the KD term is over class 0 alone, which is a single logit: its softmax is 1, so the term is 0
    torch.testing.assert_close(got, base)
    ctx.task_classes = [2, 3]  # disjoint again: both old classes are distilled and the term is positive
    assert float(with_both.loss(logits, torch.full((5,), 2), base, ctx).detach()) > 0.7


def test_a_revisited_task_is_not_its_own_teacher() -> None:
    # Prepare: tasks 0 then 1 done; the client comes back to task 0
    method, model, _, x1, _ = _lwf_after_first_task(False)
    again = make_ctx(model, 0, x1, torch.zeros(5, dtype=torch.long), seen_tasks=[0, 1], batch_x=x1)
    # Execute
    method.before_task(again)
    # Assert: only the other task is old
    assert method.old_tasks == [1]
