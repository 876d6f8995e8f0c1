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
