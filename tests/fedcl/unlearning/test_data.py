"""Held-out non-members and the exclusions every reader of client data goes through."""

from __future__ import annotations

import torch

from fedcl.config import compose
from fedcl.unlearning.data import (
    Exclusions,
    decode_samples,
    encode_samples,
    holdout_mask,
    merge_samples,
)
from tests.conftest import synthetic_overrides


def test_the_holdout_is_a_seeded_fraction_per_client_and_task() -> None:
    # Execute
    a = holdout_mask(200, 0.1, seed=0, task=1, client=2)
    # Assert: 10 % held out, the same draw every time, another draw for another client / task / seed
    assert int(a.sum()) == 20
    assert torch.equal(a, holdout_mask(200, 0.1, seed=0, task=1, client=2))
    for other in (holdout_mask(200, 0.1, 0, 1, 3), holdout_mask(200, 0.1, 0, 2, 2), holdout_mask(200, 0.1, 1, 1, 2)):
        assert not torch.equal(a, other)
    assert int(holdout_mask(200, 0.0, 0, 1, 2).sum()) == 0


def test_training_data_never_holds_held_out_forgotten_classes_or_samples() -> None:
    # Prepare: 100 samples, labels 0..3; class 3 and samples 0..4 forgotten
    x, y = torch.arange(100.0).reshape(100, 1), torch.arange(100) % 4
    excl = Exclusions(seed=0, holdout=0.2, classes=(3,), samples={7: {1: [0, 1, 2, 3, 4]}})
    # Execute
    tx, ty, idx = excl.training_data(x, y, task=1, client=7)
    hx, hy, hidx = excl.heldout_data(x, y, task=1, client=7)
    # Assert: disjoint, the held-out fifth never trains, no class 3, no forgotten sample
    held = set(torch.nonzero(holdout_mask(100, 0.2, 0, 1, 7)).flatten().tolist())
    assert not set(idx.tolist()) & held and set(hidx.tolist()) <= held
    assert 3 not in ty.tolist() and 3 not in hy.tolist()
    assert not set(idx.tolist()) & {0, 1, 2, 3, 4}
    assert torch.equal(tx.flatten(), idx.float())  # rows and indices agree
    # another client's samples are not touched
    _, _, other = excl.training_data(x, y, task=1, client=8)
    assert {0, 1, 2} & set(other.tolist()) == {0, 1, 2} - set(torch.nonzero(
        holdout_mask(100, 0.2, 0, 1, 8)).flatten().tolist()) - {3}


def test_the_holdout_applies_only_to_runs_with_requests() -> None:
    # a run without deletion requests keeps all its data (other benchmarks are unchanged)
    plain = compose(synthetic_overrides())
    with_req = compose(synthetic_overrides("unlearning=ga", "unlearning.requests=[{round:2,kind:class,target:1}]"))
    assert Exclusions.of_run(plain).holdout == 0.0
    assert Exclusions.of_run(with_req).holdout == 0.1


def test_sample_sets_round_trip_through_json_and_merge() -> None:
    a = {1: {0: [5, 3]}, 2: {1: [7]}}
    assert decode_samples(encode_samples(a)) == {1: {0: [3, 5]}, 2: {1: [7]}}
    assert merge_samples(a, {1: {0: [3, 9]}}) == {1: {0: [3, 5, 9]}, 2: {1: [7]}}
    assert decode_samples("") == {} and decode_samples(None) == {}
