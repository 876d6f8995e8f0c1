"""Metric functions against hand-computed matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcl.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forgetting_max,
    forward_transfer,
    min_acc,
    stability_gap,
    summarise,
    wc_acc,
)

# A[i, j]: accuracy on task j after training task i (T = 2)
A = np.array(
    [
        [0.90, 0.10, 0.05],
        [0.60, 0.80, 0.20],
        [0.50, 0.70, 0.95],
    ]
)
B = np.array([0.10, 0.12, 0.08])  # initial model


def test_average_accuracy() -> None:
    # (0.50 + 0.70 + 0.95) / 3
    assert average_accuracy(A) == pytest.approx(2.15 / 3)


def test_forgetting_fot_form() -> None:
    # ((0.90 - 0.50) + (0.80 - 0.70)) / 2 = 0.25
    assert forgetting(A) == pytest.approx(0.25)


def test_forgetting_max_form_differs_when_a_task_peaks_later() -> None:
    # task 0 peaks at 0.90 (row 0); task 1 peaks later than its own row here:
    A2 = A.copy()
    A2[1, 0] = 0.95  # after task 1, task 0 improved (backward transfer), then dropped
    # FOT form: ((0.90 - 0.50) + (0.80 - 0.70)) / 2 = 0.25
    # max form: ((max(0.90, 0.95) - 0.50) + (0.80 - 0.70)) / 2 = (0.45 + 0.10) / 2 = 0.275
    assert forgetting(A2) == pytest.approx(0.25)
    assert forgetting_max(A2) == pytest.approx(0.275)
    assert forgetting_max(A) == pytest.approx(0.25)


def test_backward_transfer() -> None:
    # ((0.50 - 0.90) + (0.70 - 0.80)) / 2 = -0.25
    assert backward_transfer(A) == pytest.approx(-0.25)


def test_forward_transfer() -> None:
    # ((A[0,1] - b1) + (A[1,2] - b2)) / 2 = ((0.10 - 0.12) + (0.20 - 0.08)) / 2 = 0.05
    assert forward_transfer(A, B) == pytest.approx(0.05)


def test_single_task_edge_cases() -> None:
    one = np.array([[0.7, 0.1]])
    assert average_accuracy(one) == pytest.approx(0.7)
    assert forgetting(one) == 0.0 and backward_transfer(one) == 0.0
    assert math.isnan(forward_transfer(one, np.array([0.1, 0.1])))


# per-round accuracies, 2 rounds per task, 3 tasks (rows = rounds 1..6)
NAN = np.nan
ACC_ROUNDS = np.array(
    [
        [0.60, NAN, NAN],
        [0.80, NAN, NAN],  # task 0 ends (row 1)
        [0.40, 0.50, NAN],
        [0.55, 0.70, NAN],  # task 1 ends (row 3)
        [0.30, 0.35, 0.60],
        [0.45, 0.50, 0.90],  # task 2 ends (row 5)
    ]
)
ENDS = [1, 3, 5]


def test_min_acc() -> None:
    # task 0: min over rows 2..5 = 0.30; task 1: min over rows 4..5 = 0.35 -> 0.325
    assert min_acc(ACC_ROUNDS, ENDS) == pytest.approx(0.325)
    # at row 3 only task 0 ended: min over rows 2..3 = 0.40
    assert min_acc(ACC_ROUNDS, ENDS, upto_row=3) == pytest.approx(0.40)
    assert math.isnan(min_acc(ACC_ROUNDS, ENDS, upto_row=1))


def test_wc_acc() -> None:
    # k = 3, acc_k = 0.90: 0.90 / 3 + (2/3) * 0.325 = 0.30 + 0.21667
    assert wc_acc(ACC_ROUNDS, ENDS) == pytest.approx(0.30 + 2 * 0.325 / 3)
    # at row 1 (k = 1, no ended task): acc_k itself
    assert wc_acc(ACC_ROUNDS, ENDS, upto_row=1) == pytest.approx(0.80)


def test_stability_gap() -> None:
    # task 0: 0.80 - min(0.40, 0.55) = 0.40; task 1: 0.70 - min(0.35, 0.50) = 0.35; task 2: none
    gaps = stability_gap(ACC_ROUNDS, ENDS)
    assert gaps[0] == pytest.approx(0.40) and gaps[1] == pytest.approx(0.35)
    assert math.isnan(gaps[2])


def test_summarise_is_json_ready() -> None:
    import json

    s = summarise(A, B, ACC_ROUNDS, ENDS)
    json.dumps(s)
    assert s["stability_gap"][2] is None
    assert s["acc"] == pytest.approx(2.15 / 3) and s["min_acc"] == pytest.approx(0.325)


def test_summarise_every_field_by_hand() -> None:
    s = summarise(A, B, ACC_ROUNDS, ENDS)
    assert s["forgetting"] == pytest.approx(0.25) and s["forgetting_max"] == pytest.approx(0.25)
    assert s["bwt"] == pytest.approx(-0.25) and s["fwt"] == pytest.approx(0.05)
    assert s["wc_acc"] == pytest.approx(0.30 + 2 * 0.325 / 3)
    assert s["stability_gap"][:2] == pytest.approx([0.40, 0.35])
    assert set(s) == {"acc", "forgetting", "forgetting_max", "bwt", "fwt", "min_acc", "wc_acc", "stability_gap"}


def test_summarise_without_data_gives_nones() -> None:
    s = summarise(np.zeros((0, 0)), None, np.zeros((0, 0)), [])
    assert s == {"acc": None, "forgetting": None, "forgetting_max": None, "bwt": None, "fwt": None,
                 "min_acc": None, "wc_acc": None, "stability_gap": []}
    assert summarise(A, np.array([]), ACC_ROUNDS, ENDS)["fwt"] is None  # no initial accuracies
    assert summarise(A, None, ACC_ROUNDS, ENDS)["fwt"] is None
    assert summarise(A[:1], B, ACC_ROUNDS[:2], ENDS[:1])["fwt"] is None  # NaN (one task) becomes None
    assert summarise(np.zeros(3), None, np.zeros(3), [])["acc"] is None  # 1-D: not an accuracy matrix


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 3)), np.zeros((2, 2, 2))])
def test_malformed_matrix_is_an_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="accuracy matrix must be 2-D with at least one row"):
        average_accuracy(bad)


def test_forgetting_max_looks_only_before_the_last_row() -> None:
    # task 0 improves at the end (0.99 > 0.90): the max form compares with rows 0..T-1 only
    A3 = A.copy()
    A3[2, 0] = 0.99
    # ((0.90 - 0.99) + (0.80 - 0.70)) / 2 = 0.005
    assert forgetting_max(A3) == pytest.approx(0.005)
    assert forgetting(A3) == pytest.approx(0.005) and backward_transfer(A3) == pytest.approx(-0.005)
    assert forgetting_max(A[:1]) == 0.0


def test_average_accuracy_ignores_tasks_not_yet_trained() -> None:
    # a 2 x 3 matrix (third task not reached): mean of A[1, :2]
    assert average_accuracy(A[:2]) == pytest.approx((0.60 + 0.80) / 2)
    assert forward_transfer(A[:2], B) == pytest.approx(0.10 - 0.12)


def test_metrics_at_intermediate_rows() -> None:
    # row 4: tasks 0 and 1 ended (ends 1 and 3); task 1's window is row 4 only
    assert min_acc(ACC_ROUNDS, ENDS, upto_row=4) == pytest.approx((0.30 + 0.35) / 2)
    # k = 3 begun at row 4, acc_k = 0.60: 0.60 / 3 + (2 / 3) * 0.325
    assert wc_acc(ACC_ROUNDS, ENDS, upto_row=4) == pytest.approx(0.20 + 2 * 0.325 / 3)
    # row 2: k = 2, acc_k = 0.50, min-ACC = 0.40
    assert wc_acc(ACC_ROUNDS, ENDS, upto_row=2) == pytest.approx(0.25 + 0.20)
    assert math.isnan(wc_acc(np.full((2, 2), np.nan), [1], upto_row=0))  # nothing begun


def test_stability_gap_when_the_next_task_has_not_ended_later() -> None:
    # the next task "ends" at the same row (asynchronous clients): no window, NaN
    gaps = stability_gap(ACC_ROUNDS, [3, 3, 5])
    assert math.isnan(gaps[0]) and gaps[1] == pytest.approx(0.70 - 0.35)
    assert math.isnan(gaps[2])


def test_windows_start_after_the_tasks_end() -> None:
    # task 0 was poor while being learnt (0.1), peaked at its end (0.9), then dropped to 0.8
    acc = np.array([[0.1, NAN], [0.9, NAN], [0.8, 0.5], [0.85, 0.6]])
    # rows after each end only: task 0 over rows 2..3 (0.8), task 1 (ended at row 2) over row 3 (0.6)
    assert min_acc(acc, [1, 2]) == pytest.approx((0.8 + 0.6) / 2)
    assert stability_gap(acc, [1, 2])[0] == pytest.approx(0.1)


def test_per_round_metrics_read_json_nulls_as_nan() -> None:
    # summary.json stores NaN as null: rows read back from it hold None
    rows = [[v if not (isinstance(v, float) and math.isnan(v)) else None for v in row] for row in ACC_ROUNDS.tolist()]
    assert min_acc(rows, ENDS) == pytest.approx(0.325)  # type: ignore[arg-type]
    assert wc_acc(rows, ENDS) == pytest.approx(0.30 + 2 * 0.325 / 3)  # type: ignore[arg-type]
    assert stability_gap(rows, ENDS)[:2] == pytest.approx([0.40, 0.35])  # type: ignore[arg-type]
    assert summarise(A, B, rows, ENDS)["min_acc"] == pytest.approx(0.325)  # type: ignore[arg-type]


def test_summarise_with_one_row_or_malformed_parts() -> None:
    one = summarise(A[:1], B, ACC_ROUNDS[:1], [1])  # after the first task, first round only
    assert one["acc"] == pytest.approx(0.90) and one["forgetting"] == 0.0
    assert one["wc_acc"] == pytest.approx(0.60) and one["min_acc"] is None
    # no rows at all, or per-round data that is not a matrix: those metrics are None, not an error
    none = summarise(np.zeros((0, 3)), B, np.zeros((0, 3)), [1])
    assert none["acc"] is None and none["min_acc"] is None and none["stability_gap"] == []
    flat = summarise(A, B, np.zeros(3), [0, 1])
    assert flat["min_acc"] is None and flat["wc_acc"] is None and flat["stability_gap"] == []
