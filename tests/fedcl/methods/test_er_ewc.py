"""ER + online EWC: both states survive the round trip, and it forgets less than naive fine-tuning."""

from __future__ import annotations

from fedcl.methods import build_method
from fedcl.methods.er_ewc import ErEwc
from fedcl.methods.naive import Naive
from tests.fedcl.methods.toy import run_two_tasks


def test_er_ewc_keeps_buffer_and_fisher_and_forgets_less_than_naive() -> None:
    # Prepare / Execute
    naive = run_two_tasks(Naive)
    both = run_two_tasks(lambda: ErEwc(buffer_size=50, replay_batch_size=16, ewc_lambda=10.0, fisher_samples=32))
    # Assert
    assert both.forgetting < naive.forgetting
    method = build_method("er_ewc", {"buffer_size": 20, "fisher_samples": 8})
    assert isinstance(method, ErEwc) and method.er.buffer_size == 20 and method.ewc.fisher_samples == 8
    state = method.state_dict()
    assert set(state) == {"er", "ewc"}


def test_loss_is_ers_loss_plus_ewcs_penalty_and_task_end_estimates_the_fisher() -> None:
    import torch
    from torch.nn import functional as F

    from tests.fedcl.methods.toy import make_ctx, make_model, toy_task

    model = make_model(0)
    method = ErEwc(buffer_size=8, replay_batch_size=4, ewc_lambda=2.0, fisher_samples=8)
    x0, y0 = toy_task(0, 8, seed=0)
    c0 = make_ctx(model, 0, x0, y0)
    bx, _ = method.adapt_batch(x0, y0, c0)
    assert bx is x0 and len(method.er.buffer) == 8  # ER's part: the batch went into the buffer
    method.after_task(c0)
    assert method.ewc.fisher and method.ewc.anchor  # EWC's part: Fisher and anchor of task 0
    x1, y1 = toy_task(1, 4, seed=0)
    c1 = make_ctx(model, 1, x1, y1)
    bx, by = method.adapt_batch(x1, y1, c1)
    assert bx.shape[0] == 8
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    logits = model(bx)
    base = F.cross_entropy(logits, by)
    penalty = sum(float((method.ewc.fisher[n] * (p.detach() - method.ewc.anchor[n]) ** 2).sum())
                  for n, p in model.named_parameters())
    torch.testing.assert_close(method.loss(logits, by, base, c1).detach(), base.detach() + 1.0 * penalty)
    restored = ErEwc(buffer_size=8, ewc_lambda=2.0)
    restored.load_state_dict(method.state_dict())
    assert len(restored.er.buffer) == 8 and restored.ewc.fisher.keys() == method.ewc.fisher.keys()
