"""The per-run record of the server: per-round evaluations, the accuracy matrix, outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.metrics.asynchrony import end_order, reorder
from fedcl.metrics.functions import forgetting, summarise


class Tracker:
    """Records every round's evaluation and each task's end; writes ``metrics.jsonl`` and ``summary.json``.

    Parameters
    ----------
    num_tasks : int
        Number of tasks in the stream (columns of the accuracy data).
    out_dir : str | Path | None
        Run folder; ``None`` keeps everything in memory (tests).
    """

    def __init__(self, num_tasks: int, out_dir: str | Path | None) -> None:
        self.num_tasks = num_tasks
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rows: list[dict[str, Any]] = []
        self.initial: list[float] = []
        self.matrix: dict[int, list[float]] = {}
        self.end_rounds: dict[int, int] = {}
        self.notes: list[str] = []  # lines other parts of the run add under the final table (warnings)

    # ---- recording ---------------------------------------------------------
    def log_round(
        self,
        server_round: int,
        task: int,
        task_accs: dict[int, float],
        task_losses: dict[int, float],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one round (and one line of ``metrics.jsonl``); return the row."""
        accs = {str(t): float(a) for t, a in sorted(task_accs.items())}
        row: dict[str, Any] = {
            "round": int(server_round),
            "task": int(task),
            "acc_per_task": accs,
            "loss_per_task": {str(t): float(v) for t, v in sorted(task_losses.items())},
            "mean_acc_seen": float(np.mean(list(accs.values()))) if accs else None,
            "current_task_acc": accs.get(str(task)),
            **(extra or {}),
        }
        self.rows.append(row)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
        return row

    def set_initial_accuracy(self, accs: list[float]) -> None:
        """Accuracy of the initial model on each task (b in FWT)."""
        self.initial = [float(a) for a in accs]

    def log_task_end(self, task: int, server_round: int, accs: list[float]) -> None:
        """Row ``task`` of the accuracy matrix (every task's full test split) and its end round."""
        self.matrix[int(task)] = [float(a) for a in accs]
        self.end_rounds[int(task)] = int(server_round)

    def add_note(self, text: str) -> None:
        """A line (or lines) printed under the final table (e.g. a subspace's plasticity warning)."""
        self.notes.append(text)

    # ---- views ---------------------------------------------------------------
    def accuracy_matrix(self) -> np.ndarray:
        """Rows for the tasks ended so far, in task order."""
        rows = [self.matrix[t] for t in sorted(self.matrix)]
        return np.asarray(rows, dtype=float).reshape(len(rows), self.num_tasks)

    def acc_rounds(self) -> np.ndarray:
        """R x num_tasks per-round accuracies (NaN where a task was not evaluated)."""
        out = np.full((len(self.rows), self.num_tasks), np.nan)
        for r, row in enumerate(self.rows):
            for t, a in row["acc_per_task"].items():
                out[r, int(t)] = a
        return out

    def task_end_rows(self) -> list[int]:
        """0-based row of each ended task's end round in :meth:`acc_rounds`."""
        index = {row["round"]: i for i, row in enumerate(self.rows)}
        return [index[self.end_rounds[t]] for t in sorted(self.end_rounds) if self.end_rounds[t] in index]

    def forgetting_so_far(self) -> float | None:
        """FOT-form forgetting of the accuracy-matrix rows recorded so far (None before task 1 ends)."""
        A = self.accuracy_matrix()
        return forgetting(A) if A.shape[0] > 1 else None

    # ---- outputs -------------------------------------------------------------
    def summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """All metrics, the accuracy matrix and the caller's extra fields."""
        A = self.accuracy_matrix()
        rounds = self.acc_rounds()
        order = end_order(self.end_rounds, rounds)
        if order == list(range(self.num_tasks)):
            out = summarise(A, np.asarray(self.initial) if self.initial else None, rounds, self.task_end_rows())
        else:  # asynchronous run: tasks ended out of id order, metrics read rows/columns in end order
            index = {row["round"]: i for i, row in enumerate(self.rows)}
            end_rows = {t: index[r] for t, r in self.end_rounds.items() if r in index}
            A, b, rounds, ends = reorder(self.matrix, self.initial, rounds, end_rows, order)
            out = summarise(A, b, rounds, ends)
        out.update(
            {
                "task_order": order,  # rows and columns of accuracy_matrix (fedcl/metrics/asynchrony.py)
                "accuracy_matrix": A.tolist(),
                "initial_accuracy": list(self.initial),
                "task_end_rounds": [self.end_rounds[t] for t in sorted(self.end_rounds)],
                "rounds": len(self.rows),
            }
        )
        out.update(extra or {})
        return out

    def write_summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``summary.json`` and ``accuracy_matrix.csv``; return the summary."""
        summary = self.summary(extra)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
            A = self.accuracy_matrix()
            header = ",".join(f"task_{j}" for j in range(self.num_tasks))
            np.savetxt(self.out_dir / "accuracy_matrix.csv", A, delimiter=",", header=header, comments="", fmt="%.6f")
        return summary

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state for checkpoints."""
        return {
            "num_tasks": self.num_tasks,
            "rows": self.rows,
            "initial": self.initial,
            "matrix": {str(k): v for k, v in self.matrix.items()},
            "end_rounds": {str(k): v for k, v in self.end_rounds.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``metrics.jsonl`` is not rewritten)."""
        self.num_tasks = int(state["num_tasks"])
        self.rows = [dict(r) for r in state["rows"]]
        self.initial = [float(a) for a in state["initial"]]
        self.matrix = {int(k): [float(a) for a in v] for k, v in state["matrix"].items()}
        self.end_rounds = {int(k): int(v) for k, v in state["end_rounds"].items()}

    # ---- text ----------------------------------------------------------------
    @staticmethod
    def format_round(row: dict[str, Any]) -> str:
        """One human line per round."""
        cur = row.get("current_task_acc")
        seen = row.get("mean_acc_seen")
        parts = [
            f"round {row['round']:>4}",
            f"task {row['task']}",
            f"acc(current)={cur:.3f}" if cur is not None else "acc(current)=  -  ",
            f"acc(seen)={seen:.3f}" if seen is not None else "acc(seen)=  -  ",
        ]
        if "bytes_up" in row and "bytes_down" in row:
            parts.append(f"up {_mb(row['bytes_up'])} down {_mb(row['bytes_down'])}")
        if row.get("seconds") is not None:
            parts.append(f"{row['seconds']:.1f} s")
        if row.get("failures"):
            parts.append(f"failures {row['failures']}")
        return " | ".join(parts)

    def format_table(self) -> str:
        """The accuracy matrix and the summary metrics as a text table (percent)."""
        A = self.accuracy_matrix()
        lines = ["", "accuracy matrix (%): row = after training task i, column = task j"]
        lines.append(" " * 14 + "".join(f"{'task ' + str(j):>9}" for j in range(self.num_tasks)))
        for t in sorted(self.matrix):
            lines.append(f"after task {t:<3}" + "".join(f"{100 * a:>9.1f}" for a in self.matrix[t]))
        s = self.summary()
        lines.append("")
        for key, label in [("acc", "ACC"), ("forgetting", "Forgetting"), ("forgetting_max", "Forgetting (max)"),
                           ("bwt", "BWT"), ("fwt", "FWT"), ("min_acc", "min-ACC"), ("wc_acc", "WC-ACC")]:
            v = s.get(key)
            lines.append(f"{label:<18}" + (f"{100 * v:8.2f}" if v is not None else "       -"))
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + ("" if A.size else "\n(no task has ended)")


def _mb(n: Any) -> str:
    return f"{float(n or 0) / 1e6:.2f} MB"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
