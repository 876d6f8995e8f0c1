"""``unlearning=analytic`` through the real loop: one round, equal to the retrain oracle, honest about the backbone.

Runs as in ``test_analytic.py`` (synthetic stream of 4 classes in 2 tasks of 2 classes, 4 clients,
Dirichlet split, d_e = 96). The oracle is ``unlearning=retrain``: the same run with the requested data
removed from round 1; it saves its model at each request round. When the forgotten data never
trained the backbone (class 3 lives in task 1 only; or ``base_rounds=0``: a random backbone that
nothing trains) the two backbones are bit-identical and the unlearned head must equal the oracle's
head (``RTOL = 1e-10``; measured ~1e-15); when it did (a client of the base rounds), the summary must
say so and not claim exactness.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from fedcl.analytic.head import HEAD_WEIGHT
from tests.fedcl.analytic.helpers import checkpoint, ledger_oracle, rel_err, run_analytic, run_stream

RTOL = 1e-10
# holdout 0: the ledger oracle below sums every sample of a client (held-out non-members are tested on their own)
BASE = ("federation.num_clients=4", "stream.partition=dirichlet", "federation.rounds_per_task=2",
        "unlearning.holdout=0")


def _pair(tmp: Path, requests: str, *extra: str, form: str = "downdate") -> tuple[dict[str, Any], Path, Path]:
    """An oracle run and an analytic-unlearning run of the same config; the latter's summary."""
    req = f"unlearning.requests={requests}"
    run_analytic(tmp / "oracle", *BASE, "unlearning=retrain", req, *extra)
    summary = run_analytic(tmp / "unlearn", *BASE, "unlearning=analytic", req, f"unlearning.form={form}",
                           f"unlearning.oracle_dir={tmp / 'oracle'}", *extra)
    return summary, tmp / "oracle", tmp / "unlearn"


def _head_after(run_dir: Path, rnd: int) -> torch.Tensor:
    return checkpoint(run_dir, rnd)["arrays"][HEAD_WEIGHT]


def _oracle_head(oracle: Path, rnd: int) -> torch.Tensor:
    blob = torch.load(oracle / "unlearning" / f"oracle-round-{rnd}.pt", map_location="cpu", weights_only=False)
    return blob["state"][HEAD_WEIGHT]


@pytest.mark.parametrize("form", ["downdate", "woodbury"])
def test_class_request_equals_the_retrain_oracle_in_one_round(tmp_path: Path, form: str) -> None:
    # Prepare / Execute: forget class 3 (task 1) at the last round
    summary, oracle, unlearn = _pair(tmp_path, "[{round:4,kind:class,target:3}]", form=form)
    # Assert
    job = summary["unlearning"]["jobs"][0]
    record = summary["unlearning"]["method_state"]["analytic"][0]
    assert job["rounds"] == 1
    assert record["exact"] is True and record["backbone_saw_forgotten_data"] is False
    w, w_oracle = _head_after(unlearn, 4), _oracle_head(oracle, 4)
    assert rel_err(w, w_oracle) < RTOL
    assert job["oracle"]["gap_after"]["test_acc"] == pytest.approx(0.0, abs=1e-9)
    assert float(checkpoint(unlearn, 4)["arrays"]["head.mask"][3]) < -1e8  # the class is masked, as in the oracle


def test_client_that_trained_the_backbone_is_not_claimed_exact(tmp_path: Path) -> None:
    # Prepare / Execute: client 1 trained the backbone in rounds 1-2
    summary, oracle, unlearn = _pair(tmp_path, "[{round:4,kind:client,target:1}]")
    # Assert: the summary says so, and the heads indeed differ from the oracle's (other backbone)
    record = summary["unlearning"]["method_state"]["analytic"][0]
    assert record["head_exact"] is True
    assert record["backbone_saw_forgotten_data"] is True and record["exact"] is False
    assert "client 1 trained the backbone" in record["reason"]
    assert rel_err(_head_after(unlearn, 4), _oracle_head(oracle, 4)) > 1e3 * RTOL


def test_sequential_requests_compose_to_the_oracle(tmp_path: Path) -> None:
    """Random frozen backbone (base_rounds=0): class 1 at round 2, client 2 at round 3, class 3 at round 4.

    After each request the head is the centralised ridge on what remains (the ledger minus the dropped
    classes); after the last one it is the retrain oracle's, which never saw any of the three.
    """
    # Prepare
    requests = "[{round:2,kind:class,target:1},{round:3,kind:client,target:2},{round:4,kind:class,target:3}]"
    over = (*BASE, "strategy.base_rounds=0")
    req = f"unlearning.requests={requests}"
    extra = ("strategy.base_rounds=0", "checkpoint.every_rounds=1")
    oracle = tmp_path / "oracles"
    (oracle / "unlearning").mkdir(parents=True)
    for k, rnd in ((1, 2), (2, 3), (3, 4)):  # one retrain oracle per request round (later requests still trained)
        run_analytic(tmp_path / f"retrain{k}", *BASE, "unlearning=retrain", req, f"unlearning.point={k}", *extra)
        shutil.copy(tmp_path / f"retrain{k}" / "unlearning" / f"oracle-round-{rnd}.pt", oracle / "unlearning")
    # Execute
    unlearn = tmp_path / "unlearn"
    summary = run_analytic(unlearn, *BASE, "unlearning=analytic", req, f"unlearning.oracle_dir={oracle}", *extra)
    # Assert
    records = summary["unlearning"]["method_state"]["analytic"]
    assert [r["exact"] for r in records] == [True, True, True]
    stream = run_stream(over)
    for rnd in (2, 3, 4):
        ck = checkpoint(unlearn, rnd)
        state = ck["strategy"]["analytic"]
        w_cen, _, _ = ledger_oracle(ck["arrays"], stream, state["ledger"], dropped=state["dropped_classes"])
        assert rel_err(ck["arrays"][HEAD_WEIGHT][0], w_cen) < RTOL, rnd
    assert rel_err(_head_after(unlearn, 4), _oracle_head(oracle, 4)) < RTOL
    final = checkpoint(unlearn, 4)["strategy"]["analytic"]
    assert "2" not in final["ledger"] and final["dropped_classes"] == [1, 3]


def test_a_partial_forget_would_be_caught(tmp_path: Path) -> None:
    """Planted: the oracle of a *different* class must not match (the comparison has teeth)."""
    summary, oracle, unlearn = _pair(tmp_path, "[{round:4,kind:class,target:3}]")
    other = tmp_path / "other"
    run_analytic(other, *BASE, "unlearning=retrain", "unlearning.requests=[{round:4,kind:class,target:2}]")
    assert rel_err(_head_after(unlearn, 4), _oracle_head(other, 4)) > 1e3 * RTOL
    del summary, oracle
