"""Every method with two clients averaged into a global model by FedAvg (``toy.run_federated``).

Each client restores its own method state every round (a fresh object, as between Flower
messages), trains from the global weights and replies; the server averages the weights and
sums the methods' outboxes (FedCurv). The naive run on the same stream is the reference:
its global model forgets most of task 0.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedcl.methods import build_method
from fedcl.methods.lines import layer_groups, lines_scales
from tests.fedcl.methods.baselines import federated_kwargs, naive_federated
from tests.fedcl.methods.toy import run_federated

# method (a "+"-joined name is a composition, method=[er,ewc]), params, multi-head stream,
# forgetting below naive's by at least, accuracy on the last task at least
CASES: list[tuple[str, dict[str, Any], bool, float, float]] = [
    ("agem", {"buffer_size": 200, "ref_batch_size": 64}, False, 0.3, 0.9),
    ("derpp", {"buffer_size": 200}, False, 0.25, 0.9),
    ("ema", {"beta": 0.7}, False, 0.3, 0.75),
    ("er", {"buffer_size": 200}, False, 0.3, 0.9),
    ("er+ewc", {"ewc": {"fisher_samples": 32}}, False, 0.3, 0.8),
    ("ewc", {"ewc_lambda": 100.0, "fisher_samples": 64}, False, 0.2, 0.9),
    ("fedcurv", {"lam": 50.0, "fisher_samples": 64}, False, 0.15, 0.9),
    ("fpf", {"steps": 50}, False, 0.3, 0.9),
    ("kfpf", {"every": 5}, False, 0.3, 0.9),
    ("kfpf_kd", {"every": 5}, False, 0.3, 0.9),
    ("derpp+fpf", {}, False, 0.25, 0.9),
    ("gpm", {"threshold": 0.7, "threshold_increment": 0.0}, False, 0.3, 0.8),
    ("joint", {}, False, 0.3, 0.8),
    ("lwf", {"alpha": 5.0}, True, 0.15, 0.6),
    ("si", {"si_c": 5.0}, False, 0.25, 0.9),
    ("uer", {"buffer_size": 20, "replay_batch_size": 8}, False, 0.3, 0.9),
]


def test_naive_global_model_forgets_the_first_task() -> None:
    naive = naive_federated()
    assert naive.acc[0][0] > 0.9 and naive.forgetting > 0.4 and naive.acc_last_task > 0.9
    assert naive.states == [{}, {}]


@pytest.mark.parametrize(("name", "params", "multi_head", "margin", "last"), CASES,
                         ids=[c[0] for c in CASES])
def test_global_model_forgets_less_than_naive(
    name: str, params: dict[str, Any], multi_head: bool, margin: float, last: float
) -> None:
    # Prepare / Execute
    naive = naive_federated(multi_head)
    methods = {n: params.get(n, {}) for n in name.split("+")} if "+" in name else {name: params}
    result = run_federated(lambda: build_method(methods), **federated_kwargs(multi_head))
    # Assert: the averaged model keeps task 0 and still learns task 1; every client kept a state of its own
    assert result.forgetting < naive.forgetting - margin, (result.acc, naive.acc)
    assert result.acc_last_task > last, result.acc
    assert len(result.states) == 2
    if name != "joint":
        assert all(result.states), "a client's method state was lost between rounds"


def test_fedcurv_clients_exchange_fisher_sums_each_round() -> None:
    result = run_federated(lambda: build_method({"fedcurv": {"lam": 50.0, "fisher_samples": 64}}))
    # both clients sent their Fisher in the last round (4) and remember it to subtract next round
    assert [s["own_round"] for s in result.states] == [4, 4]
    u0, u1 = (s["own_u"]["body.1.weight"] for s in result.states)
    assert not torch.equal(u0, u1)  # each client's own data


def test_wa_alignment_raises_the_global_models_old_class_accuracy() -> None:
    # distillation off in both: the difference is the alignment alone
    wa = {"buffer_size": 10, "replay_batch_size": 4, "kd_lambda": 0.0}
    aligned = run_federated(lambda: build_method({"wa": wa}))
    plain = run_federated(lambda: build_method({"wa": {**wa, "align": False}}))
    assert aligned.acc[1][0] > plain.acc[1][0] + 0.05, (aligned.acc, plain.acc)
    assert aligned.acc_last_task > 0.9


def test_lines_global_model_is_the_layer_scaled_average_of_the_naive_one() -> None:
    # Prepare: LiNeS trains exactly like naive fine-tuning and only rescales each client's task
    # vector at its task end (task 0 unscaled); the clients share the task's starting point, so
    # the average of the scaled models is the scaled average: w = w_0 + lambda_l (w_naive - w_0)
    naive = naive_federated()
    # Execute
    lines = run_federated(lambda: build_method({"lines": {"alpha": 0.3, "beta": 0.7}}))
    # Assert
    start, end = naive.snapshots[0], naive.snapshots[1]
    torch.testing.assert_close(lines.snapshots[0], start)
    groups = layer_groups(lines.model)
    for names, lam in zip(groups, lines_scales(len(groups), 0.3, 0.7), strict=True):
        for k in names:
            torch.testing.assert_close(lines.snapshots[1][k], start[k] + lam * (end[k] - start[k]),
                                       rtol=1e-5, atol=1e-6)
    assert lines.forgetting < naive.forgetting
