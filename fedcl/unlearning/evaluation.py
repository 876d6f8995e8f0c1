"""Forget / retain / test evaluation sets of a deletion request and the report of one model on them.

The server of a simulation can rebuild every client's data from the stream, so the
evaluation (not the unlearning) may look at the forgotten samples themselves:

* ``forget``: the training samples to forget (a leaving client's data of the seen
  tasks; every client's samples of a forgotten class), the *members* of the attack;
* ``retain``: training samples that stay (other clients; other classes);
* ``test``: the test split of the seen tasks; for a class request also ``test_forget``
  (the class's test samples) and ``test_retain`` (the rest);
* ``nonmember``: data the model never trained on from the forget set's distribution
  (``test_forget`` for a class request, ``test`` for a client request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcl.data import Stream
from fedcl.seeding import derive_seed
from fedcl.trainer import task_logits
from fedcl.unlearning.metrics import accuracy, entropy, mean_kl, mia_auc, per_sample_loss
from fedcl.unlearning.metrics import auc as roc_auc

Part = tuple[int, torch.Tensor, torch.Tensor]  # (task, x, y)


@dataclass
class EvalSets:
    """Named lists of per-task parts (a multi-head model needs each part's task)."""

    sets: dict[str, list[Part]] = field(default_factory=dict)

    def size(self, name: str) -> int:
        return sum(int(y.shape[0]) for _, _, y in self.sets.get(name, []))


def _cap(x: torch.Tensor, y: torch.Tensor, n: int, *seed: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] <= n:
        return x, y
    idx = np.sort(np.random.default_rng(derive_seed(*seed)).choice(x.shape[0], size=n, replace=False))
    return x[idx], y[idx]


def _isin(y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.isin(y, torch.as_tensor(classes or [-1], dtype=y.dtype))


def build_eval_sets(
    stream: Stream, tasks: list[int], forget_clients: list[int], forget_classes: list[int],
    dropped_classes: list[int], excluded_clients: list[int], per_set: int, seed: int,
) -> EvalSets:
    """The evaluation sets of one job (``per_set`` samples per set, spread over the tasks)."""
    per_task = max(1, per_set // max(len(tasks), 1))
    out = EvalSets({k: [] for k in ("forget", "retain", "test", "test_forget", "test_retain", "nonmember")})
    for t in tasks:
        fx, fy, rx, ry = [], [], [], []
        for c in range(stream.num_clients):
            x, y = stream.client_data(t, c)
            keep = ~_isin(y, dropped_classes)
            x, y = x[keep], y[keep]
            if c in forget_clients:
                fx.append(x)
                fy.append(y)
            elif c not in excluded_clients:
                f = _isin(y, forget_classes)
                fx.append(x[f])
                fy.append(y[f])
                rx.append(x[~f])
                ry.append(y[~f])
        parts = {"forget": (fx, fy), "retain": (rx, ry)}
        for name, (xs, ys) in parts.items():
            if xs:
                x, y = _cap(torch.cat(xs), torch.cat(ys), per_task, seed, "unlearn-eval", name, t)
                out.sets[name].append((t, x, y))
        x, y = stream.eval_data(t, None)
        keep = ~_isin(y, dropped_classes)
        x, y = _cap(x[keep], y[keep], per_task, seed, "unlearn-eval", "test", t)
        out.sets["test"].append((t, x, y))
        f = _isin(y, forget_classes)
        out.sets["test_forget"].append((t, x[f], y[f]))
        out.sets["test_retain"].append((t, x[~f], y[~f]))
    out.sets["nonmember"] = out.sets["test_forget"] if forget_classes else out.sets["test"]
    return out


@torch.no_grad()
def outputs(model: nn.Module, parts: list[Part], multi_head: bool, stream: Stream,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated logits and labels of ``parts`` (CPU)."""
    was = model.training
    model.eval()
    logits, labels = [], []
    for t, x, y in parts:
        if x.shape[0] == 0:
            continue
        classes = list(stream.tasks[t].classes) if multi_head else None
        logits.append(task_logits(model, x.to(device), t, multi_head, classes).float().cpu())
        labels.append(y)
    model.train(was)
    if not logits:
        return torch.zeros(0, stream.num_classes), torch.zeros(0, dtype=torch.int64)
    return torch.cat(logits), torch.cat(labels)


def report(
    model: nn.Module, sets: EvalSets, stream: Stream, device: torch.device
) -> tuple[dict[str, Any], torch.Tensor]:
    """Accuracies, membership-inference AUCs and per-task retain accuracy of one model; and its test logits."""
    mh = stream.multi_head
    res: dict[str, Any] = {}
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in ("forget", "retain", "test", "test_forget", "test_retain", "nonmember"):
        cache[name] = outputs(model, sets.sets.get(name, []), mh, stream, device)
        if name != "nonmember":
            res[f"{name}_acc"] = accuracy(*cache[name])
    fl, nl = cache["forget"], cache["nonmember"]
    res["mia_auc_loss"] = _nan_none(mia_auc(per_sample_loss(*fl).numpy(), per_sample_loss(*nl).numpy()))
    res["mia_auc_entropy"] = _nan_none(roc_auc(-entropy(fl[0]).numpy(), -entropy(nl[0]).numpy()))
    res["retain_acc_per_task"] = {
        str(t): accuracy(*outputs(model, [(t, x, y)], mh, stream, device)) for t, x, y in sets.sets["test_retain"]
    }
    return res, cache["test"][0]


def compare(after: dict[str, Any], oracle: dict[str, Any], test_logits: torch.Tensor,
            oracle_logits: torch.Tensor) -> dict[str, Any]:
    """Gap to the oracle: accuracy differences (method - oracle) and mean KL(oracle || method) on test."""
    gap: dict[str, Any] = {}
    for k in ("forget_acc", "retain_acc", "test_acc", "test_forget_acc", "test_retain_acc", "mia_auc_loss"):
        a, o = after.get(k), oracle.get(k)
        gap[k] = None if a is None or o is None else float(a) - float(o)
    gap["test_kl"] = mean_kl(oracle_logits, test_logits) if oracle_logits.shape == test_logits.shape else None
    return gap


def task_drop(before: dict[str, Any], after: dict[str, Any], current_task: int) -> dict[str, Any]:
    """Retain-accuracy drop per seen task caused by the unlearning step (the continual angle)."""
    b, a = before["retain_acc_per_task"], after["retain_acc_per_task"]
    drops = {t: b[t] - a[t] for t in b if b[t] is not None and a.get(t) is not None}
    old = [d for t, d in drops.items() if int(t) < current_task]
    return {
        "retain_drop_per_task": drops,
        "retain_drop_old_tasks": float(np.mean(old)) if old else None,
        "retain_drop_all_tasks": float(np.mean(list(drops.values()))) if drops else None,
    }


def _nan_none(v: float) -> float | None:
    return None if v != v else float(v)
