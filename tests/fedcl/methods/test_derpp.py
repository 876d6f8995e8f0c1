"""DER++: stored logits, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedcl.methods.derpp import DERPP
from fedcl.models import MLP
from fedcl.trainer import task_logits
from tests.fedcl.methods.baselines import naive_multi_head, naive_toy, run_capture
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import make_ctx, make_model, run_two_tasks, toy_task
from tests.fedcl.methods.toy_multihead import run_two_tasks_multi_head


def test_buffer_stores_finite_logits_of_both_tasks() -> None:
    _, method = run_capture(DERPP, {"buffer_size": 60}, seed=0)
    assert isinstance(method, DERPP)
    buf = method.buffer
    assert len(buf) == 60 and buf.logits is not None and buf.logits.shape == (60, 4)
    assert torch.isfinite(buf.logits).all()
    assert buf.task_ids is not None and set(buf.task_ids.tolist()) == {0, 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_derpp_forgets_less_than_naive(seed: int) -> None:
    naive = naive_toy(seed)
    der, _ = run_capture(DERPP, {"buffer_size": 200, "alpha": 0.3, "beta": 0.5}, seed=seed)
    assert der.forgetting < naive.forgetting - 0.3
    assert der.acc1_after_task1 > 0.9


def test_derpp_multi_head() -> None:
    naive = naive_multi_head(0)
    der = run_two_tasks_multi_head(DERPP, seed=0)
    assert der.forgetting < naive.forgetting - 0.1 and der.acc1_after_task1 > 0.9


def test_derpp_state_round_trip() -> None:
    _, method = run_capture(DERPP, {"buffer_size": 50}, seed=0)
    restored = DERPP(buffer_size=50)
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


def _filled(alpha: float, beta: float) -> tuple[DERPP, torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A DER++ whose buffer holds 8 task-0 samples with stored logits unlike the model's current output."""
    model = make_model(0)
    method = DERPP(buffer_size=8, alpha=alpha, beta=beta, replay_batch_size=8)
    x0, y0 = toy_task(0, 8, seed=0)
    z0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    method.buffer.add(x0, y0, torch.zeros_like(y0), logits=z0)
    return method, model, x0, y0, z0


@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.5), (0.0, 0.5), (0.3, 0.0), (1.0, 1.0)])
def test_loss_is_ce_plus_alpha_logit_mse_plus_beta_label_ce(alpha: float, beta: float) -> None:
    # Prepare: the replay batch is the whole buffer (8 of 8), so both draws are permutations of it
    # and the means below do not depend on the draw
    method, model, x0, y0, z0 = _filled(alpha, beta)
    x1, y1 = toy_task(1, 4, seed=0)
    ctx = make_ctx(model, 1, x1, y1, batch_x=x1, batch_y=y1)
    logits = model(x1)
    base = F.cross_entropy(logits, y1)
    # Execute
    got = method.loss(logits, y1, base, ctx)
    # Assert
    out0 = model(x0)
    want = base + alpha * F.mse_loss(out0, z0) + beta * F.cross_entropy(out0, y0)
    torch.testing.assert_close(got, want)
    assert float(F.mse_loss(out0, z0).detach()) > 0.5  # the alpha term is far from zero here
    assert method.buffer.seen == 12  # the current batch was offered after the draws


def test_stored_logits_are_the_models_outputs_when_the_sample_was_seen() -> None:
    model = make_model(0)
    method = DERPP(buffer_size=20)
    x1, y1 = toy_task(1, 6, seed=0)
    logits = model(x1)
    method.loss(logits, y1, F.cross_entropy(logits, y1), make_ctx(model, 1, x1, y1, batch_x=x1))
    assert method.buffer.logits is not None and method.buffer.task_ids is not None
    torch.testing.assert_close(method.buffer.logits, logits.detach())
    assert method.buffer.task_ids.tolist() == [1] * 6 and not method.buffer.logits.requires_grad


def test_alpha_ablation_changes_the_training() -> None:
    # Prepare / Execute: the same short run with and without logit matching
    models = {}
    for alpha in (0.0, 0.3):
        model = make_model(0)
        run_two_tasks(lambda a=alpha: DERPP(buffer_size=50, alpha=a, beta=0.5), model=model, rounds_per_task=1,
                      epochs=1, n=96)
        models[alpha] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    # Assert: the alpha term moved the weights
    assert float((models[0.0] - models[0.3]).abs().max()) > 1e-3


def _filled_and_a_batch(replay_batch_size: int) -> tuple[DERPP, torch.nn.Module, torch.Tensor, torch.Tensor,
                                                         torch.Tensor, torch.Tensor]:
    """``_filled`` with another replay batch size, and a task-1 batch: its logits and plain cross-entropy."""
    method, model, _, _, _ = _filled(0.3, 0.5)
    method.replay_batch_size = replay_batch_size
    x1, y1 = toy_task(1, 4, seed=0)
    logits = model(x1)
    return method, model, x1, y1, logits, F.cross_entropy(logits, y1)


def test_no_replay_without_replay_batch_and_no_storage_without_buffer() -> None:
    method, model, x1, y1, logits, base = _filled_and_a_batch(replay_batch_size=0)
    assert method.loss(logits, y1, base, make_ctx(model, 1, x1, y1, batch_x=x1)) is base
    none = DERPP(buffer_size=0)
    assert none.loss(logits, y1, base, make_ctx(model, 1, x1, y1, batch_x=x1)) is base
    assert none.buffer.is_empty and none.buffer.seen == 0


def test_multi_head_stores_the_raw_head_output() -> None:
    torch.manual_seed(0)
    model = MLP((8,), 4, hidden=[5], num_heads=2)
    method = DERPP(buffer_size=10)
    x = torch.randn(3, 8)
    y = torch.tensor([2, 3, 2])
    ctx = make_ctx(model, 1, x, y, batch_x=x, multi_head=True)
    masked = task_logits(model, x, 1, True, [2, 3])
    method.loss(masked, y, F.cross_entropy(masked, y), ctx)
    assert method.buffer.logits is not None
    torch.testing.assert_close(method.buffer.logits, model(x, 1).detach())  # finite, unmasked


def test_single_head_stores_the_logits_of_the_training_forward_pass() -> None:
    # Prepare: dropout in training mode, so a second forward pass would give other logits
    torch.manual_seed(0)
    model = MLP((16,), 4, hidden=[32], dropout=0.5)
    model.train()
    method = DERPP(buffer_size=10)
    x1, y1 = toy_task(1, 6, seed=0)
    logits = model(x1)
    # Execute
    method.loss(logits, y1, F.cross_entropy(logits, y1), make_ctx(model, 1, x1, y1, batch_x=x1))
    # Assert: the logits the step trained on (DER's "dark knowledge"), not a new forward pass
    assert method.buffer.logits is not None
    assert torch.equal(method.buffer.logits, logits.detach())


def test_one_sample_replay_batch_and_one_sample_buffer_work() -> None:
    # Prepare
    method, model, x1, y1, logits, base = _filled_and_a_batch(replay_batch_size=1)
    tiny = DERPP(buffer_size=1)
    # Execute
    got = method.loss(logits, y1, base, make_ctx(model, 1, x1, y1, batch_x=x1))
    tiny.loss(logits, y1, base, make_ctx(model, 1, x1, y1, batch_x=x1))
    # Assert: one replayed sample adds its (positive) terms; a one-slot buffer keeps one sample
    assert float(got.detach()) > float(base.detach())
    assert len(tiny.buffer) == 1 and tiny.buffer.seen == 4


def test_buffer_and_replay_draws_come_from_the_round_generator_not_the_global_rng() -> None:
    # Prepare: a buffer of 8 offered 3 batches of 6 (reservoir draws), then replay draws of 4 of 8
    batches = [toy_task(t % 2, 6, seed=t) for t in range(3)]
    out = []
    for global_seed in (1, 2):
        model = make_model(0)
        method = DERPP(buffer_size=8, replay_batch_size=4)
        torch.manual_seed(global_seed)
        gen = torch.Generator().manual_seed(7)
        losses = []
        for x, y in batches:
            logits = model(x)
            losses.append(method.loss(logits, y, F.cross_entropy(logits, y),
                                      make_ctx(model, 1, x, y, batch_x=x, generator=gen)).detach())
            with torch.no_grad():  # the model moves on, so the logit term depends on which samples are drawn
                for p in model.parameters():
                    p.mul_(0.8)
        out.append((method.buffer.x.clone(), torch.stack(losses)))  # type: ignore[union-attr]
    # Assert
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
