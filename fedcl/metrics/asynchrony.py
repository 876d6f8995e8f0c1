"""Accuracy-matrix metrics under asynchronous schedules: tasks taken in the order they end.

With per-client offsets, orders or reoccurring tasks there is no single round at
which "task j is over" for everyone. fedcl defines **the end of task j as the round
in which the last client trains it** (``Schedule.task_end_round``): row ``j`` of
the accuracy matrix is the global model evaluated on every task right after that
round. The metrics of :mod:`fedcl.metrics.functions` read the matrix as
"after the i-th task, on the j-th task", so for an asynchronous run rows *and*
columns are put in the order the tasks ended (ties by task id; tasks that never
ended follow in the order they were first evaluated). For a synchronous run this
order is 0, 1, ..., T-1 and nothing changes.
"""

from __future__ import annotations

import numpy as np


def end_order(end_rounds: dict[int, int], acc_rounds: np.ndarray) -> list[int]:
    """Tasks by end round (ties by id), then the tasks that have not ended by first evaluation round.

    Parameters
    ----------
    end_rounds : dict[int, int]
        Task -> round in which the last client trained it (ended tasks only).
    acc_rounds : np.ndarray
        Rounds x tasks per-round accuracies (NaN = not evaluated yet).

    Returns
    -------
    list[int]
        A permutation of ``range(acc_rounds.shape[1])``.
    """
    num_tasks = acc_rounds.shape[1]
    ended = sorted(end_rounds, key=lambda t: (end_rounds[t], t))
    seen = ~np.isnan(acc_rounds)
    first = [int(np.argmax(seen[:, t])) if seen[:, t].any() else len(acc_rounds) for t in range(num_tasks)]
    rest = sorted((t for t in range(num_tasks) if t not in end_rounds), key=lambda t: (first[t], t))
    return [*ended, *rest]


def reorder(
    matrix_rows: dict[int, list[float]],
    initial: list[float],
    acc_rounds: np.ndarray,
    end_rows: dict[int, int],
    order: list[int],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[int]]:
    """The accuracy matrix, initial accuracies, per-round accuracies and end rows in ``order``.

    Parameters
    ----------
    matrix_rows : dict[int, list[float]]
        Task -> accuracy row (one column per task, in task id order) at its end.
    initial : list[float]
        Initial model accuracy per task (may be empty).
    acc_rounds : np.ndarray
        Rounds x tasks per-round accuracies.
    end_rows : dict[int, int]
        Ended task -> 0-based row of its end round in ``acc_rounds``.
    order : list[int]
        Column order from :func:`end_order`.

    Returns
    -------
    tuple
        ``(A, b, acc_rounds, task_end_rows)`` ready for :func:`fedcl.metrics.functions.summarise`.
    """
    ended = [t for t in order if t in matrix_rows]
    A = np.asarray([[matrix_rows[t][j] for j in order] for t in ended], dtype=float).reshape(len(ended), len(order))
    b = np.asarray([initial[j] for j in order], dtype=float) if initial else None
    rows = [end_rows[t] for t in order if t in end_rows]
    return A, b, np.asarray(acc_rounds, dtype=float)[:, order], rows
