"""Each unlearning method's server step against a recording federation: what it asks, what it computes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedcl.unlearning import protocol
from fedcl.unlearning.base import State, UnlearnJob
from fedcl.unlearning.fed_eraser import FedEraser
from fedcl.unlearning.ga import GradientAscent
from fedcl.unlearning.iau import IAU, iau_step
from fedcl.unlearning.requests import Request
from fedcl.unlearning.ssd import SSD


class Recorder:
    """A Federation that records every call and answers with fixed sums / weights."""

    def __init__(self, sums: dict[str, State] | None = None, metrics: dict[str, float] | None = None) -> None:
        self.calls: list[tuple[str, str, list[int], dict[str, Any]]] = []
        self._sums, self._metrics = sums or {}, metrics or {}

    def sums(self, action: str, clients: list[int], state: State,
             options: dict[str, Any]) -> tuple[dict[str, State], dict[str, float]]:
        self.calls.append(("sums", action, clients, options))
        return self._sums, self._metrics

    def weighted_mean(self, action: str, clients: list[int], state: State,
                      options: dict[str, Any]) -> tuple[State | None, dict[str, float]]:
        self.calls.append(("weighted_mean", action, clients, options))
        return {k: v + 1 for k, v in state.items()}, {}

    def individual(self, action: str, clients: list[int], state: State,
                   options: dict[str, Any]) -> dict[int, tuple[State, int]]:
        self.calls.append(("individual", action, clients, options))
        return {c: ({k: v + 0.1 for k, v in state.items()}, 10) for c in clients}


def _job(access: str = "buffer", **kw: Any) -> UnlearnJob:
    args: dict[str, Any] = dict(
        requests=[Request(4, "class", 1)], server_round=4, seen_tasks=[0, 1], current_task=1,
        retain_clients=[0, 1, 2], forget_clients=[], forget_classes=[1], dropped_classes=[], lr=0.1,
        task_of_round={1: 0, 2: 0, 3: 1, 4: 1}, data_access=access, local_epochs=4)
    args.update(kw)
    return UnlearnJob(**args)


STATE = {"w": torch.tensor([1.0, -2.0, 3.0])}


@pytest.mark.parametrize("access", ["history", "buffer"])
def test_ssd_ga_iau_pass_the_access_rule_to_every_query(access: str) -> None:
    # Prepare
    sums = {protocol.FISHER_FORGET: {"w": torch.ones(3)}, protocol.FISHER_RETAIN: {"w": torch.ones(3)},
            protocol.GRAD_FORGET: {"w": torch.ones(3)}, protocol.GRAD_RETAIN: {"w": torch.ones(3)}}
    metrics = {protocol.NUM_FORGET: 2.0, protocol.NUM_RETAIN: 2.0}
    for method in (SSD(), GradientAscent(repair_rounds=2), IAU()):
        fed = Recorder(sums, metrics)
        # Execute
        method.unlearn(STATE, _job(access), fed)
        # Assert: forget and retain data come from the same rule, every call (ascent, repair, Fisher, gradient)
        assert fed.calls and all(opts["access"] == access for _, _, _, opts in fed.calls), method.name
        assert all(opts["tasks"] == [0, 1] for _, _, _, opts in fed.calls), method.name


def test_fed_eraser_calibrates_for_a_ratio_of_the_local_epochs() -> None:
    # Prepare: 4 local epochs, ratio 0.5 -> 2 calibration epochs (the paper's r = E_cali / E_loc)
    method = FedEraser(interval=1, calibration_ratio=0.5)
    for rnd in (1, 2, 3):
        method.observe_round(rnd, STATE, {0: ({"w": torch.ones(3)}, 10), 2: ({"w": torch.ones(3)}, 10)})
    fed = Recorder()
    # Execute
    method.unlearn(STATE, _job("history", local_epochs=4), fed)
    # Assert: every calibration query trains 2 epochs; history: on the stored round's task; buffer: all held
    epochs = [opts["epochs"] for kind, _, _, opts in fed.calls if kind == "individual"]
    assert epochs and all(e == pytest.approx(2.0) for e in epochs)
    assert [opts["tasks"] for _, _, _, opts in fed.calls] == [[0], [0], [1]]
    method = FedEraser(interval=1)
    for rnd in (1, 2, 3):
        method.observe_round(rnd, STATE, {0: ({"w": torch.ones(3)}, 10)})
    fed = Recorder()
    method.unlearn(STATE, _job("buffer", local_epochs=1), fed)
    assert [(opts["tasks"], opts["epochs"]) for _, _, _, opts in fed.calls] == [([0, 1], 0.5)] * 3
    with pytest.raises(Exception, match="calibration_ratio"):
        FedEraser(calibration_ratio=0.0)


def test_iau_takes_one_step_from_sums_only() -> None:
    # Prepare: forget gradient sum 6 over 2 samples (mean 3), retain sum 4 over 4 samples (mean 1)
    sums = {protocol.GRAD_FORGET: {"w": torch.full((3,), 6.0)}, protocol.GRAD_RETAIN: {"w": torch.full((3,), 4.0)}}
    fed = Recorder(sums, {protocol.NUM_FORGET: 2.0, protocol.NUM_RETAIN: 4.0})
    # Execute
    new, rounds = IAU(lr=0.5, step="sgd").unlearn(STATE, _job(), fed)
    # Assert: theta - lr (g_retain - g_forget) = theta - 0.5 (1 - 3) = theta + 1; one round of sums
    assert torch.allclose(new["w"], STATE["w"] + 1.0) and rounds == 1
    assert [kind for kind, *_ in fed.calls] == ["sums"] and not IAU.needs_individual_updates
    # Adam's first step moves every coordinate by lr in the sign of -g
    adam = iau_step(STATE, {"w": torch.tensor([1.0, -1.0, 0.0])}, {"w": torch.zeros(3)}, 0.1, "adam")
    assert torch.allclose(adam["w"], STATE["w"] - 0.1 * torch.tensor([1.0, -1.0, 0.0]), atol=1e-6)


def test_iau_leaves_the_model_when_no_client_holds_forget_data() -> None:
    fed = Recorder({protocol.GRAD_FORGET: {"w": torch.zeros(3)}, protocol.GRAD_RETAIN: {"w": torch.ones(3)}},
                   {protocol.NUM_FORGET: 0.0, protocol.NUM_RETAIN: 4.0})
    new, _ = IAU(lr=0.5, step="sgd").unlearn(STATE, _job(), fed)
    assert torch.equal(new["w"], STATE["w"])


def test_sample_requests_ask_only_the_owners_to_ascend() -> None:
    # Prepare: samples of clients 0 and 2 forgotten
    fed = Recorder()
    job = _job(forget_classes=[], requests=[Request(4, "random", 3)], forget_samples={0: {1: [4]}, 2: {0: [1, 2]}})
    # Execute
    GradientAscent(repair_rounds=1).unlearn(STATE, job, fed)
    # Assert: the ascent goes to the owners, with the sample set; the repair to everyone, without it
    (_, _, ascent_clients, ascent), (_, _, repair_clients, repair) = fed.calls
    assert ascent_clients == [0, 2] and repair_clients == [0, 1, 2]
    assert '"2":{"0":[1,2]}' in ascent["forget_samples"] and repair["forget_samples"] == ""
    assert '"2":{"0":[1,2]}' in repair["drop_samples"]
