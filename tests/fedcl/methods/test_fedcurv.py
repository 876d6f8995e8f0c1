"""FedCurv: penalty of the others' curvature from server sums, own-part subtraction, forgetting, state."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord
from torch import nn

from fedcl import sums
from fedcl.methods.base import TaskContext
from fedcl.methods.fedcurv import RECORD, FedCurv
from fedcl.methods.naive import Naive
from fedcl.trainer import TrainConfig, evaluate, train_local
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import NUM_CLASSES, make_model, toy_task

NAME = sums.PREFIX + RECORD


def _ctx(model: nn.Module, task: int, rnd: int, payload: dict[str, Any] | None = None, seed: int = 0) -> TaskContext:
    x, y = toy_task(task, 400, seed)
    return TaskContext(
        model=model, task_id=task, client_id=0, server_round=rnd, task_round=0, last_round_of_task=False,
        x=x, y=y, device=torch.device("cpu"), num_classes=NUM_CLASSES, task_classes=[2 * task, 2 * task + 1],
        seen_tasks=[task], global_params={k: v.detach().clone() for k, v in model.named_parameters()},
        generator=torch.Generator().manual_seed(seed * 1000 + rnd), payload=payload or {},
    )


def _payload(parts: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]], sums_round: int) -> dict[str, Any]:
    """The server's message: element-wise sums of the clients' (F_j, theta_j) as u = F, v = F * theta."""
    arrays: dict[str, Array] = {}
    for name in parts[0][0]:
        u = sum(f[name] for f, _ in parts)
        v = sum(f[name] * t[name] for f, t in parts)
        arrays["u/" + name] = Array(u.numpy().astype(np.float32))
        arrays["v/" + name] = Array(v.numpy().astype(np.float32))
    return {NAME: ArrayRecord(arrays), sums.META: ConfigRecord({sums.META_ROUND: sums_round})}


def _random_client(model: nn.Module, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}
    theta = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    return fisher, theta


def test_penalty_gradient_is_the_papers_over_the_other_clients_only() -> None:
    # Prepare: the sums hold clients 1, 2 and this client's own (u_i, v_i) sent in round 4
    model = make_model(0)
    others = [_random_client(model, 1), _random_client(model, 2)]
    own_f, own_t = _random_client(model, 3)
    method = FedCurv(lam=2.0)
    method.own_u = own_f
    method.own_v = {n: own_f[n] * own_t[n] for n in own_f}
    method.own_round = 4
    ctx = _ctx(model, 0, 5, _payload([*others, (own_f, own_t)], sums_round=4))
    # Execute
    loss = method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(0.0), ctx)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # Assert: d/dtheta of lam * sum_{j != i} F_j (theta - theta_j)^2, own client left out
    for (name, p), g in zip(model.named_parameters(), grads, strict=True):
        want = sum(2.0 * 2.0 * f[name] * (p.detach() - t[name]) for f, t in others)
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-4)
    assert float(loss.detach()) >= 0.0


def test_own_part_is_kept_when_the_sums_are_from_a_round_it_missed() -> None:
    # Prepare: own u/v were sent in round 2, the sums come from round 4 (client not sampled then)
    model = make_model(0)
    other = _random_client(model, 1)
    method = FedCurv()
    method.own_u = {n: torch.full_like(p, 100.0) for n, p in model.named_parameters()}
    method.own_v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    method.own_round = 2
    # Execute
    got = method.others(_ctx(model, 0, 5, _payload([other], sums_round=4)))
    # Assert: nothing subtracted
    for name, (u, v) in got.items():
        torch.testing.assert_close(u, other[0][name])
        torch.testing.assert_close(v, other[0][name] * other[1][name], rtol=1e-5, atol=1e-6)


def test_no_sums_or_only_itself_means_plain_loss() -> None:
    model = make_model(0)
    method = FedCurv(lam=5.0)
    base = torch.tensor(1.25)
    assert method.loss(torch.zeros(1), torch.zeros(1), base, _ctx(model, 0, 1)) is base
    # alone in the sums: sum - own = 0 everywhere
    fisher = {n: torch.rand(p.shape) for n, p in model.named_parameters()}
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.own_u, method.own_v, method.own_round = fisher, {n: fisher[n] * theta[n] for n in fisher}, 1
    method._terms = None
    assert method.loss(torch.zeros(1), torch.zeros(1), base, _ctx(model, 0, 2, _payload([(fisher, theta)], 1))) is base


def test_after_round_sends_fisher_and_fisher_times_weights() -> None:
    # Prepare
    model = make_model(0)
    ctx = _ctx(model, 0, 3)
    method = FedCurv(fisher_samples=32)
    # Execute
    method.after_round(ctx)
    # Assert
    sent = ctx.outbox[RECORD]
    for name, p in model.named_parameters():
        assert (sent["u/" + name] >= 0).all()
        torch.testing.assert_close(sent["v/" + name], sent["u/" + name] * p.detach())
    assert method.own_round == 3 and sum(float(u.sum()) for u in method.own_u.values()) > 0


def _train(method: Any, model: nn.Module, task: int, rnd: int, payload: dict[str, Any] | None = None) -> None:
    cfg = TrainConfig(lr=0.05, local_epochs=6, batch_size=32, momentum=0.0, weight_decay=0.0, proximal_mu=0.0)
    train_local(method, _ctx(model, task, rnd, payload), cfg)


def test_curvature_of_a_client_on_the_old_task_reduces_forgetting() -> None:
    # Prepare: a shared model after task 0; "another client" still holds task 0 and sent its (F, theta)
    model = make_model(0)
    _train(Naive(), model, 0, 1)
    probe = FedCurv(fisher_samples=256)
    ctx0 = _ctx(model, 0, 2)
    probe.after_round(ctx0)
    other = (probe.own_u, {n: p.detach().clone() for n, p in model.named_parameters()})
    test0 = toy_task(0, 400, 999)
    acc_before = evaluate(model, *test0)[1]
    naive_model, curv_model = copy.deepcopy(model), copy.deepcopy(model)
    # Execute: this client learns task 1, naively or with FedCurv's penalty
    _train(Naive(), naive_model, 1, 3)
    _train(FedCurv(lam=50.0), curv_model, 1, 3, _payload([other], sums_round=2))
    # Assert
    naive_drop = acc_before - evaluate(naive_model, *test0)[1]
    curv_drop = acc_before - evaluate(curv_model, *test0)[1]
    assert curv_drop < naive_drop - 0.2, (naive_drop, curv_drop)


def test_fedcurv_state_round_trip() -> None:
    model = make_model(0)
    method = FedCurv(fisher_samples=16)
    method.after_round(_ctx(model, 0, 7))
    restored = FedCurv(fisher_samples=16)
    restored.load_state_dict(method.state_dict())
    assert_state_equal(restored.state_dict(), method.state_dict())


def test_uninformative_entries_drop_out_and_missing_meta_keeps_own_part() -> None:
    # Prepare: the others' Fisher is 0 (or below min_fisher) on half of the entries
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    u = torch.tensor([[4.0, 1e-13]])
    theta = torch.tensor([[3.0, 5.0]])
    arrays = ArrayRecord({"u/weight": Array((u).numpy()), "v/weight": Array((u * theta).numpy())})
    method = FedCurv(lam=0.5, min_fisher=1e-12)
    method.own_u, method.own_v, method.own_round = {"weight": torch.ones(1, 2)}, {"weight": torch.ones(1, 2)}, 4
    ctx = _ctx(model, 0, 5, {NAME: arrays})  # no sums-meta: the round is unknown, nothing is subtracted
    # Execute
    got = method.loss(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), ctx)
    # Assert: 1 + 0.5 * 4 * (1 - 3)^2 = 9; the 1e-13 entry carries no information
    torch.testing.assert_close(got.detach(), torch.tensor(9.0))
    assert FedCurv(lam=0.0).loss(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), ctx) == 1.0


def _linear_ctx(payload: dict[str, Any], device: str = "cpu") -> TaskContext:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
        model.bias.fill_(0.0)
    ctx = _ctx(model, 0, 5, payload)
    ctx.device = torch.device(device)
    return ctx


def _sums(arrays: dict[str, torch.Tensor], sums_round: int = 4) -> dict[str, Any]:
    record = ArrayRecord({k: Array(v.numpy().astype(np.float32)) for k, v in arrays.items()})
    return {NAME: record, sums.META: ConfigRecord({sums.META_ROUND: sums_round})}


def test_fresh_and_empty_states_hold_no_own_part() -> None:
    # Prepare: a method that has sent its own part, and a fresh one
    sent = FedCurv(fisher_samples=16)
    sent.after_round(_ctx(make_model(0), 0, 7))
    # Execute: an older checkpoint without FedCurv's keys loads as "never sent"
    sent.load_state_dict({})
    # Assert
    fresh = {"own_u": {}, "own_v": {}, "own_round": -1}
    assert_state_equal(FedCurv().state_dict(), fresh)
    assert_state_equal(sent.state_dict(), fresh)


def test_default_lam_of_one_penalises() -> None:
    # Prepare: U' = 4 on the first weight, whose target is 3; the weight is 1
    ctx = _linear_ctx(_sums({"u/weight": torch.tensor([[4.0, 0.0]]), "v/weight": torch.tensor([[12.0, 0.0]])}))
    # Execute
    got = FedCurv().loss(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), ctx)
    # Assert: 1 + 1.0 * 4 * (1 - 3)^2
    torch.testing.assert_close(got.detach(), torch.tensor(17.0))


def test_penalty_called_first_builds_its_terms() -> None:
    ctx = _linear_ctx(_sums({"u/weight": torch.tensor([[4.0, 0.0]]), "v/weight": torch.tensor([[12.0, 0.0]])}))
    torch.testing.assert_close(FedCurv().penalty(ctx).detach(), torch.tensor(16.0))


def test_parameters_missing_from_the_sums_are_skipped_and_the_rest_kept() -> None:
    # Prepare: the weight has only half of its pair (v, no u); the bias has both
    ctx = _linear_ctx(_sums({"v/weight": torch.ones(1, 2), "u/bias": torch.ones(1), "v/bias": torch.ones(1)}))
    # Execute
    got = FedCurv().others(ctx)
    # Assert
    assert list(got) == ["bias"]


def test_min_fisher_itself_carries_no_information() -> None:
    # Prepare: U' equals min_fisher on the first entry and exceeds it on the second (targets 3 and 5)
    ctx = _linear_ctx(_sums({"u/weight": torch.tensor([[0.5, 2.0]]), "v/weight": torch.tensor([[1.5, 10.0]])}))
    # Execute
    got = FedCurv(min_fisher=0.5).penalty(ctx)
    # Assert: only 2 * (1 - 5)^2
    torch.testing.assert_close(got.detach(), torch.tensor(32.0))


def test_terms_and_penalty_live_on_the_run_device() -> None:
    # Prepare: the meta device stands in for an accelerator (the tensors move, nothing is computed)
    ctx = _linear_ctx(_sums({"u/weight": torch.ones(1, 2), "v/weight": torch.ones(1, 2)}), device="meta")
    method = FedCurv()
    # Execute
    u, target = method._penalty_terms(ctx)["weight"]
    method._terms = {}
    empty = method.penalty(ctx)
    # Assert
    assert u.device.type == target.device.type == empty.device.type == "meta"


def test_a_new_round_or_a_loaded_state_drops_the_cached_terms() -> None:
    # Prepare: terms cached from one message
    first = _sums({"u/weight": torch.tensor([[4.0, 0.0]]), "v/weight": torch.tensor([[12.0, 0.0]])})
    ctx = _linear_ctx(first)
    ctx.x, ctx.y = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)  # after_round's Fisher needs 2 features
    method = FedCurv(fisher_samples=8)
    method.penalty(ctx)
    second = _sums({"u/weight": torch.tensor([[2.0, 0.0]]), "v/weight": torch.tensor([[10.0, 0.0]])}, sums_round=6)
    # Execute: the round ends, the next message arrives; then a checkpoint is loaded and the message read again
    method.after_round(ctx)
    ctx.payload = second
    after_round = method.penalty(ctx).detach()
    method.load_state_dict({})
    ctx.payload = first
    after_load = method.penalty(ctx).detach()
    # Assert: 2 * (1 - 5)^2, then 4 * (1 - 3)^2
    torch.testing.assert_close(after_round, torch.tensor(32.0))
    torch.testing.assert_close(after_load, torch.tensor(16.0))
