"""How much of each layer a stored subspace has taken: FOT's global bases or GPM's clients' bases (a round hook).

A subspace method protects old tasks by freezing the directions its bases span, so
a layer whose basis holds nearly all of its input directions can hardly learn
anything new. This hook makes that visible: per layer and per task, the basis
dimension, the layer's input dimension, their share and the energy threshold
``eps'`` actually used (:func:`fedcl.subspace.occupancy`), in ``metrics.jsonl``
(``subspace_fot`` / ``subspace_gpm`` on the rounds the bases grew), ``summary.json``
(``subspace``), ``subspace.png`` and the run's final table, with a warning once a
layer passes 90 %.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

import fedcl.keys as keys
from fedcl.data import Schedule
from fedcl.hooks import RoundHook
from fedcl.metrics.tracker import Tracker
from fedcl.subspace import exhausted, parse_occupancy_metrics

log = logging.getLogger("fedcl")
LIMIT = 0.9  # share of a layer's input directions past which the run warns
KINDS = {"fot": "FOT's global bases", "gpm": "GPM's client bases (mean over the clients of the round; max_share: "
                                            "the fullest client)"}


class SubspaceOccupancy(RoundHook):
    """Per-layer occupancy of a run's subspace bases, task after task (a round hook).

    Parameters
    ----------
    kind : str
        ``fot`` (the server's global bases, read from ``source`` after each GPSE) or ``gpm``
        (each client's local bases, read from the ``subspace-*`` metrics of the replies of
        clients that just ended a task, :func:`fedcl.subspace.occupancy_metrics`).
    schedule : Schedule
        The run's schedule (which round ended which task).
    tracker : Tracker
        The run's tracker: the warnings join its final table.
    source : Callable[[], dict] | None, default None
        ``fot``: the occupancy after the newest GPSE (``FOT.occupancy``).
    """

    def __init__(self, kind: str, schedule: Schedule, tracker: Tracker,
                 source: Callable[[], dict[str, Any]] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"subspace occupancy: kind {kind!r} is not one of {sorted(KINDS)}")
        self.kind, self.name = kind, f"subspace_{kind}"
        self.schedule, self.tracker, self.source = schedule, tracker, source
        self.history: list[dict[str, Any]] = []  # one entry per growth: round, task, layers
        self.warnings: dict[str, str] = {}  # layer -> the warning, once it passed LIMIT
        self._clients: list[dict[str, dict[str, Any]]] = []

    def on_replies(self, server_round: int, arrays: ArrayRecord, replies: list[Message]) -> None:
        """GPM: the occupancy each client reported with its reply (clients that just ended a task)."""
        if self.kind != "gpm":
            return
        self._clients = []
        for r in replies:
            metrics = None if r.has_error() else r.content.get(keys.METRICS)
            layers = parse_occupancy_metrics(dict(metrics)) if isinstance(metrics, MetricRecord) else {}
            if layers:
                self._clients.append(layers)

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """The ``subspace_<kind>`` column on the rounds the bases grew (FOT: task ends; GPM: clients' task ends)."""
        layers = self._layers(server_round)
        if not layers:
            return {}
        self.history.append({"round": server_round, "task": self.schedule.global_task(server_round),
                             "layers": layers})
        # GPM: the warning follows the fullest client
        fullest = {k: {**o, "dim": o.get("dim_max", o["dim"]), "share": o.get("max_share", o["share"])}
                   for k, o in layers.items()}
        for layer, text in exhausted(fullest, LIMIT).items():
            if layer not in self.warnings:
                self.warnings[layer] = text
                log.warning("%s (%s, round %d)", text, KINDS[self.kind], server_round)
        return {self.name: layers}

    def _layers(self, server_round: int) -> dict[str, Any]:
        if self.kind == "fot":
            ended = any(self.schedule.task_end_round(t) == server_round for t in range(self.schedule.num_tasks))
            return (self.source() if self.source is not None else {}) if ended else {}
        clients, self._clients = self._clients, []
        if not clients:
            return {}
        out: dict[str, Any] = {}
        for layer in sorted({name for c in clients for name in c}):
            per = [c[layer] for c in clients if layer in c]
            eps = [o["eps_used"] for o in per if o["eps_used"] is not None]
            out[layer] = {"dim": float(np.mean([o["dim"] for o in per])), "input_dim": int(per[0]["input_dim"]),
                          "share": float(np.mean([o["share"] for o in per])),
                          "max_share": float(max(o["share"] for o in per)),
                          "eps_used": float(np.mean(eps)) if eps else None, "clients": len(per),
                          "dim_max": int(max(o["dim"] for o in per))}
        return out

    def final(self) -> dict[str, Any]:
        """The newest occupancy per layer (empty before the first growth)."""
        return dict(self.history[-1]["layers"]) if self.history else {}

    def summary(self) -> dict[str, Any]:
        """``subspace.<kind>``: what the numbers are, every growth, the final occupancy, the warnings."""
        if not self.history:
            return {}
        return {"subspace": {self.kind: {"bases": KINDS[self.kind], "limit": LIMIT, "per_task": self.history,
                                         "final": self.final(), "warnings": list(self.warnings.values())}}}

    def on_run_end(self, run_dir: Path, plots: bool) -> None:
        """``subspace.png`` (``subspace_gpm.png`` for GPM) and the warnings under the run's final table."""
        if not self.history:
            return
        lines = [f"subspace occupancy ({KINDS[self.kind]}), final: " + ", ".join(
            f"{layer} {_dim(o)}/{int(o['input_dim'])} ({100 * float(o['share']):.0f} %)"
            for layer, o in self.final().items())]
        self.tracker.add_note("\n".join([*lines, *(f"WARNING {w}" for w in self.warnings.values())]))
        if plots:
            plot_occupancy(self.history, run_dir / ("subspace.png" if self.kind == "fot" else "subspace_gpm.png"),
                           f"subspace occupancy per layer ({KINDS[self.kind].split(' (')[0]})", LIMIT)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "warnings": self.warnings}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.warnings = dict(state.get("warnings", {}))


def _dim(occ: dict[str, Any]) -> str:
    d = occ["dim"]
    return f"{d:.1f}" if isinstance(d, float) and not d.is_integer() else str(int(d))


def plot_occupancy(history: list[dict[str, Any]], path: Path, title: str, limit: float) -> Path:
    """Share of each layer's input directions its basis holds, after each growth (percent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    layers = sorted({name for h in history for name in h["layers"]})
    x = list(range(1, len(history) + 1))
    for layer in layers:
        share = [100 * float(h["layers"][layer]["share"]) if layer in h["layers"] else np.nan for h in history]
        d = next(int(h["layers"][layer]["input_dim"]) for h in history if layer in h["layers"])
        ax.plot(x, share, marker="o", label=f"{layer} (d={d})")
    ax.axhline(100 * limit, color="red", linestyle="--", linewidth=1, label=f"{100 * limit:.0f} %")
    ax.set_xticks(x, [str(h["task"]) for h in history])
    ax.set_xlabel("after the end of task")
    ax.set_ylabel("basis dim / input dim (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
