"""Membership-inference AUC, output divergence and the methods' pure steps on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.unlearning.client import fisher_sum, split_task
from fedcl.unlearning.fed_eraser import calibrate, weighted_update
from fedcl.unlearning.metrics import auc, mean_kl, mia_auc, per_sample_loss
from fedcl.unlearning.ssd import dampen


def test_auc_matches_the_mann_whitney_definition() -> None:
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count one half
    # P(m > n) over the 2 x 3 pairs: (2>1), (4>1), (4>3) and 2 vs 3 lost, 4 vs 5 and 2 vs 5 lost -> 3/6
    assert auc(np.array([2.0, 4.0]), np.array([1.0, 3.0, 5.0])) == pytest.approx(0.5)
    assert np.isnan(auc(np.array([]), np.array([1.0])))


def _memorise(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_mia_auc_is_high_for_a_model_that_saw_the_data_and_near_half_for_the_oracle() -> None:
    # Prepare: random labels, so only memorisation tells members from non-members
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 16, generator=g)
    y = torch.randint(0, 4, (192,), generator=g)
    forget, retain, unseen = slice(0, 64), slice(64, 128), slice(128, 192)
    trained = _memorise(torch.cat([x[forget], x[retain]]), torch.cat([y[forget], y[retain]]), seed=1)
    oracle = _memorise(x[retain], y[retain], seed=1)  # retrained without the forget set
    # Execute
    with torch.no_grad():
        before = mia_auc(per_sample_loss(trained(x[forget]), y[forget]).numpy(),
                         per_sample_loss(trained(x[unseen]), y[unseen]).numpy())
        after = mia_auc(per_sample_loss(oracle(x[forget]), y[forget]).numpy(),
                        per_sample_loss(oracle(x[unseen]), y[unseen]).numpy())
    # Assert
    assert before > 0.9
    assert abs(after - 0.5) < 0.15


def test_mean_kl_is_zero_for_equal_outputs_and_handles_masked_heads() -> None:
    logits = torch.tensor([[2.0, 0.0, float("-inf")], [0.0, 1.0, float("-inf")]])
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-9)
    other = torch.tensor([[0.0, 2.0, float("-inf")], [0.0, 1.0, float("-inf")]])
    kl = mean_kl(logits, other)
    assert kl is not None and kl > 0.1 and np.isfinite(kl)


def test_ssd_dampens_only_parameters_far_more_important_to_the_forget_data() -> None:
    # Prepare
    w = {"w": torch.tensor([1.0, 1.0, 1.0])}
    f_ref = {"w": torch.tensor([1.0, 1.0, 1.0])}
    f_forget = {"w": torch.tensor([100.0, 5.0, 20.0])}
    # Execute
    new, frac = dampen(w, f_ref, f_forget, alpha=10.0, lam=1.0)
    # Assert: beta = min(lam F_ref / F_forget, 1) where F_forget > alpha F_ref
    assert torch.allclose(new["w"], torch.tensor([0.01, 1.0, 0.05]))
    assert frac == pytest.approx(2 / 3)


def test_fed_eraser_calibration_keeps_the_old_norm_and_the_new_direction() -> None:
    old = {"w": torch.tensor([3.0, 4.0])}
    new = {"w": torch.tensor([0.0, -0.1])}
    cal = calibrate(old, new)
    assert torch.allclose(cal["w"], torch.tensor([0.0, -5.0]))
    agg = weighted_update({0: ({"w": torch.tensor([1.0])}, 1), 1: ({"w": torch.tensor([4.0])}, 3)})
    assert agg is not None and torch.allclose(agg["w"], torch.tensor([3.25]))


def test_fisher_sum_equals_the_per_sample_loop() -> None:
    # Prepare
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(7):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            assert p.grad is not None
            expected[k] += p.grad**2
    # Execute
    got = fisher_sum(model, x, y, task_id=0, multi_head=False, task_classes=None, batch_size=3)
    # Assert
    for k in expected:
        assert torch.allclose(got[k], expected[k], atol=1e-6), k


def test_split_task_separates_forget_and_retain_data() -> None:
    x, y = torch.arange(6.0).reshape(6, 1), torch.tensor([0, 1, 2, 0, 1, 2])
    s = split_task(x, y, 0, forget_all=False, forget_classes=[1], drop=[2])
    assert s.y_forget.tolist() == [1, 1] and s.y_retain.tolist() == [0, 0]
    s = split_task(x, y, 0, forget_all=True, forget_classes=[], drop=[])
    assert s.y_forget.numel() == 6 and s.y_retain.numel() == 0


def test_the_calibrated_attack_is_chance_against_the_reference_and_sees_memorisation() -> None:
    from fedcl.unlearning.evaluation import calibrated_auc

    # Prepare: 50 members and 50 non-members of varied difficulty (the reference's logits)
    torch.manual_seed(0)
    y = torch.randint(0, 3, (50,))
    ref = {name: (torch.randn(50, 3) * 2, y) for name in ("forget", "nonmember")}
    # a model that memorised its members: their true-class logit is 1 higher than the reference's
    bump = torch.nn.functional.one_hot(y, 3).float()
    model = {"forget": (ref["forget"][0] + bump, y), "nonmember": ref["nonmember"]}
    # Execute / Assert: against itself every score is 0 (chance exactly); memorised members score above
    assert calibrated_auc(ref, ref) == 0.5
    assert calibrated_auc(model, ref) == 1.0
    # the uncalibrated loss attack barely sees it: sample difficulty drowns the memorisation
    loss_auc = mia_auc(per_sample_loss(*model["forget"]).numpy(), per_sample_loss(*model["nonmember"]).numpy())
    assert loss_auc < 0.8
