"""Local vs global forgetting: what each client's own model forgets, and how that spreads over clients.

Global forgetting (:func:`fedcl.metrics.functions.forgetting`) is measured on the
averaged model. With ``eval.local_forgetting: true`` every client also evaluates
its own model after local training on each task it has trained
(:mod:`fedcl.local_eval`). The local forgetting of client ``c`` on task ``j`` is
its accuracy on ``j`` at the end of its last round on ``j`` (the schedule's
``is_last_round_of_task``) minus its accuracy on ``j`` at its final evaluation; a
client's forgetting is the mean over the tasks it finished before its last round,
in the FOT form of Bakman et al. (ICLR 2024) applied per client (Yoon et al.,
ICML 2021, discuss the same local/global split for FedWeIT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

import fedcl.local_eval as local_eval
from fedcl.data import Schedule
from fedcl.hooks import RoundHook
from fedcl.metrics.tracker import Tracker


class LocalForgetting(RoundHook):
    """Collects clients' local evaluations over a run and summarises per-client forgetting (a round hook).

    Parameters
    ----------
    schedule : Schedule
        The run's schedule (tells which round ended which task for which client).
    tracker : Tracker | None, default None
        The run's tracker (the global forgetting the summary sets beside the local one).
    """

    name = "local_forgetting"

    def __init__(self, schedule: Schedule, tracker: Tracker | None = None) -> None:
        self.schedule = schedule
        self.tracker = tracker
        # client -> task -> [(round, acc)]; and client -> task -> round of its last end of that task
        self.history: dict[int, dict[int, list[tuple[int, float]]]] = {}
        self.ends: dict[int, dict[int, int]] = {}

    def on_replies(self, server_round: int, arrays: ArrayRecord, replies: list[Message]) -> None:
        """Take this round's local-eval records out of the replies."""
        self.collect(server_round, replies)

    def collect(self, server_round: int, replies: list[Message]) -> int:
        """Take the local-eval records out of this round's replies (before aggregation); return how many."""
        n = 0
        for r in replies:
            if r.has_error() or local_eval.RECORD not in r.content:
                continue
            rec = r.content[local_eval.RECORD]
            del r.content[local_eval.RECORD]  # not a model record: aggregation and validation never see it
            if isinstance(rec, MetricRecord):
                self.record(server_round, rec)
                n += 1
        return n

    def record(self, server_round: int, rec: MetricRecord | dict[str, Any]) -> None:
        """One client's accuracies after its local training in ``server_round``."""
        c, accs = local_eval.parse(rec)
        for t, a in accs.items():
            self.history.setdefault(c, {}).setdefault(t, []).append((server_round, a))
        task = self.schedule.task_at(server_round, c)
        if task is not None and self.schedule.is_last_round_of_task(server_round, c):
            self.ends.setdefault(c, {})[task] = server_round

    def per_client(self) -> dict[int, float]:
        """Mean local forgetting of every client that finished a task before its final evaluation."""
        out: dict[int, float] = {}
        for c, tasks in self.history.items():
            final_round = max(r for evals in tasks.values() for r, _ in evals)
            drops = []
            for t, end in self.ends.get(c, {}).items():
                if end >= final_round:
                    continue  # the client's current task at its last round: nothing to forget yet
                by_round = dict(tasks.get(t, []))
                if end in by_round and final_round in by_round:
                    drops.append(by_round[end] - by_round[final_round])
            if drops:
                out[c] = float(np.mean(drops))
        return out

    def summary(self) -> dict[str, Any]:
        """``local_forgetting`` (mean over clients), its distribution and ``global_forgetting`` side by side."""
        return self.compare(self.tracker.summary().get("forgetting") if self.tracker is not None else None)

    def on_run_end(self, run_dir: Path, plots: bool) -> None:
        """``local_forgetting.png``: per-client local forgetting beside the global model's."""
        if plots:
            from fedcl.metrics.stream_plots import plot_forgetting_distribution

            glob = self.tracker.summary().get("forgetting") if self.tracker is not None else None
            plot_forgetting_distribution(self.per_client(), glob, run_dir / "local_forgetting.png")

    def compare(self, global_forgetting: float | None) -> dict[str, Any]:
        """The summary keys for a given global forgetting."""
        per = self.per_client()
        vals = np.asarray(list(per.values()), dtype=float)
        dist: dict[str, Any] = {"clients": len(per), "per_client": {str(c): v for c, v in sorted(per.items())}}
        if vals.size:
            dist.update({"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()),
                         "median": float(np.median(vals)), "max": float(vals.max())})
        return {
            "global_forgetting": global_forgetting,
            "local_forgetting": float(vals.mean()) if vals.size else None,
            "local_forgetting_distribution": dist,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (checkpoints)."""
        return {"history": {str(c): {str(t): v for t, v in h.items()} for c, h in self.history.items()},
                "ends": {str(c): {str(t): r for t, r in e.items()} for c, e in self.ends.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.history = {int(c): {int(t): [(int(r), float(a)) for r, a in v] for t, v in h.items()}
                        for c, h in state.get("history", {}).items()}
        self.ends = {int(c): {int(t): int(r) for t, r in e.items()} for c, e in state.get("ends", {}).items()}
