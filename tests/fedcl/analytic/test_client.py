"""The analytic client's data: what its statistics are computed from."""

from __future__ import annotations

import torch

from fedcl.analytic.client import task_samples
from fedcl.unlearning.data import Exclusions
from tests.fedcl.analytic.helpers import synthetic_stream


def test_held_out_non_members_never_enter_the_statistics() -> None:
    # Prepare: a run with deletion requests holds out 30 % of every client's task data (MIA non-members)
    stream = synthetic_stream(partition="iid")
    excl = Exclusions(seed=0, holdout=0.3)
    x_all, y_all = stream.client_data(0, 1)
    # Execute
    x, y = task_samples(stream, 0, 1, None, 0, excl)
    x_plain, _ = task_samples(stream, 0, 1, None, 0)
    # Assert: exactly the samples that may train (the held-out positions dropped), and all without exclusions
    keep = excl.indices(y_all, 0, 1)
    assert 0 < x.shape[0] < x_all.shape[0]
    assert torch.equal(x, x_all[keep]) and torch.equal(y, y_all[keep])
    assert torch.equal(x_plain, x_all)
