"""FedEraser: rebuild the global model from stored client updates, calibrated by the remaining clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedcl.errors import ConfigError
from fedcl.unlearning.base import Federation, State, Unlearner, UnlearnJob


@dataclass
class _Stored:
    server_round: int
    global_before: State
    updates: dict[int, tuple[State, int]]  # client -> (W_i - W, num examples)


def _float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def calibrate(old: State, new: State) -> State:
    """FedEraser's calibrated update: the old update's norm with the new update's direction, layer by layer."""
    out = {}
    for k, u_new in new.items():
        n_new = float(u_new.norm())
        out[k] = u_new * (float(old[k].norm()) / n_new) if n_new > 0 else torch.zeros_like(u_new)
    return out


def weighted_update(updates: dict[int, tuple[State, int]]) -> State | None:
    """sum_i n_i U_i / sum_i n_i (None when no samples)."""
    total = sum(n for _, n in updates.values())
    if total <= 0:
        return None
    order = sorted(updates)  # by client id, accumulated in float64: independent of the replies' order
    keys_ = updates[order[0]][0].keys()
    out = {}
    for k in keys_:
        acc = torch.zeros_like(updates[order[0]][0][k], dtype=torch.float64)
        for c in order:
            u, n = updates[c]
            acc += u[k].double() * (n / total)
        out[k] = acc.to(updates[order[0]][0][k].dtype)
    return out


class FedEraser(Unlearner):
    """FedEraser-style unlearning from the server's history of individual client updates.

    Liu et al., "FedEraser: Enabling Efficient Client-Level Data Removal from
    Federated Learning Models" (IWQoS 2021). The server stores, every ``interval``
    rounds, the global model and each client's update. To forget, it rebuilds the
    model from the first stored round: the first step aggregates the remaining
    clients' stored updates; at every later stored round the remaining clients train
    the rebuilt model for ``calibration_ratio`` times the run's local epochs
    (``train.local_epochs``; the paper's ratio r = E_cali / E_loc, 0.5 in its
    experiments) and each calibrated update keeps the stored update's norm with the new
    update's direction (layer-wise). For a class or sample request every client
    calibrates on its data without the forgotten samples. It needs every client's
    individual update, so it cannot run under secure aggregation
    (``needs_individual_updates``).

    Data access: with ``unlearning.data_access=history`` calibration at a stored round
    uses that round's task data; with ``buffer`` a client no longer has it and
    calibrates on what it holds (its current task and its replay buffer) at every stored
    round. The stored updates themselves are the server's history, whatever the rule.

    Parameters
    ----------
    interval : int, default 2
        Store the updates of every ``interval``-th round (Delta t in the paper).
    calibration_ratio : float, default 0.5
        Calibration training as a fraction of the normal local training (paper: 0.5).
    calibration_lr : float | None, default None
        Calibration learning rate (None: ``train.lr``).
    """

    name = "fed_eraser"
    needs_individual_updates = True

    def __init__(
        self, interval: int = 2, calibration_ratio: float = 0.5, calibration_lr: float | None = None
    ) -> None:
        if not (isinstance(interval, int) and interval >= 1):
            raise ConfigError("unlearning.interval", interval, "an integer >= 1")
        if not 0 < calibration_ratio <= 1:
            raise ConfigError("unlearning.calibration_ratio", calibration_ratio,
                              "a number in (0, 1]: calibration epochs / train.local_epochs (paper: 0.5)")
        self.interval, self.calibration_lr = interval, calibration_lr
        self.calibration_ratio = float(calibration_ratio)
        self.history: list[_Stored] = []
        self.stored_bytes = 0

    def observe_round(self, server_round: int, global_before: State, updates: dict[int, tuple[State, int]]) -> None:
        if (server_round - 1) % self.interval:
            return
        self.history.append(_Stored(server_round, {k: v.clone() for k, v in global_before.items()}, updates))
        self.stored_bytes += sum(t.element_size() * t.nelement() for u, _ in updates.values() for t in u.values())

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        hist = [h for h in self.history if h.server_round <= job.server_round]
        if not hist:
            return state, 0
        gone = set(job.forget_clients)
        class_request = bool(job.forget_classes)
        model = {k: v.clone() for k, v in hist[0].global_before.items()}
        lr = float(self.calibration_lr if self.calibration_lr is not None else job.lr)
        rounds = 0
        for i, h in enumerate(hist):
            kept = {c: u for c, u in h.updates.items() if c not in gone and c in job.retain_clients}
            if not kept:
                continue
            if i == 0 and not class_request:
                # the first stored round starts from the same model: the old updates need no calibration
                agg = weighted_update(kept)
            else:
                task = job.task_of_round.get(h.server_round, job.current_task)
                tasks = [task] if job.data_access == "history" else None  # buffer: whatever is held
                opts = job.retain_options("train", tasks, epochs=self.calibration_ratio * job.local_epochs, lr=lr,
                                          salt=h.server_round, report_client=True)
                replies = fed.individual("train", sorted(kept), model, opts)
                rounds += 1
                cal = {}
                for c, (w, n) in replies.items():
                    new_u = {k: w[k] - model[k] for k in w if _float(model[k])}
                    old_u = {k: kept[c][0][k] for k in new_u}
                    cal[c] = (calibrate(old_u, new_u), kept[c][1] if n > 0 else 0)
                agg = weighted_update(cal) if cal else None
            if agg is not None:
                model = {k: (v + agg[k].to(v.dtype)) if k in agg and _float(v) else v for k, v in model.items()}
        # the forgotten clients' history is no longer needed, and must not be reused by a later request
        for h in self.history:
            for c in gone:
                h.updates.pop(c, None)
        return model, rounds

    def state_dict(self) -> dict[str, Any]:
        return {"stored_rounds": [h.server_round for h in self.history], "stored_bytes": self.stored_bytes}
