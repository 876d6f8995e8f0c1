"""Forget / retain / non-member / test evaluation sets of deletion requests and the report of one model on them.

The server of a simulation can rebuild every client's data from the stream, so the
evaluation (not the unlearning) may look at the forgotten samples themselves:

* ``forget``: the training samples to forget (a leaving client's data of the seen
  tasks; every client's samples of a forgotten class; the requested samples), the
  *members* of the membership-inference attack;
* ``nonmember``: held-out samples (split off before training, never trained on,
  :mod:`fedcl.unlearning.data`) from the same distribution: the leaving client's, the
  forgotten class's, every remaining client's for a random sample set, and the matched
  held-out set of a worst-case set (:mod:`fedcl.unlearning.forget_sets`);
* ``retain``: training samples that stay;
* ``test``: the test split of the seen tasks; for a class request also ``test_forget``
  (the class's test samples) and ``test_retain`` (the rest).

Two attacks: the loss threshold of Yeom et al. (``mia_auc_loss``) and, given the retrain
oracle, a per-example calibrated one (``mia_auc_calibrated``): the score of a sample is
how much lower its loss is under the model than under the oracle, the reference model
that never trained on it (difficulty calibration, Watson et al., ICLR 2022; the oracle
as reference as in U-LiRA, Hayes et al., "Inexact Unlearning Needs More Careful
Evaluations to Avoid a False Sense of Privacy", 2024). Against the oracle itself every
score is 0: 0.5 exactly; a model that still remembers its forget set scores above.
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
from fedcl.unlearning.data import Exclusions, Samples
from fedcl.unlearning.metrics import accuracy, entropy, mean_kl, mia_auc, per_sample_loss
from fedcl.unlearning.metrics import auc as roc_auc

Part = tuple[int, torch.Tensor, torch.Tensor]  # (task, x, y)
Outputs = dict[str, tuple[torch.Tensor, torch.Tensor]]  # set name -> (logits, labels)
SETS = ("forget", "nonmember", "retain", "test", "test_forget", "test_retain")


@dataclass
class EvalSets:
    """Named lists of per-task parts (a multi-head model needs each part's task)."""

    sets: dict[str, list[Part]] = field(default_factory=dict)

    def size(self, name: str) -> int:
        return sum(int(y.shape[0]) for _, _, y in self.sets.get(name, []))


@dataclass(frozen=True)
class Forgotten:
    """What one evaluation forgets: clients, classes, samples, and the samples' non-members.

    ``any_nonmember``: every remaining client's held-out samples are non-members (a
    random sample set); else only those of ``clients`` / ``classes`` / ``nonmembers``.
    """

    clients: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    samples: Samples = field(default_factory=dict)
    nonmembers: Samples = field(default_factory=dict)
    any_nonmember: bool = False


def _cap(x: torch.Tensor, y: torch.Tensor, n: int, *seed: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] <= n:
        return x, y
    idx = np.sort(np.random.default_rng(derive_seed(*seed)).choice(x.shape[0], size=n, replace=False))
    return x[idx], y[idx]


def _isin(v: torch.Tensor, members: list[int]) -> torch.Tensor:
    return torch.isin(v, torch.as_tensor(members or [-1], dtype=v.dtype))


def _client_parts(stream: Stream, t: int, c: int, f: Forgotten,
                  excl: Exclusions) -> tuple[torch.Tensor, ...]:
    """One client's (forget x, y, retain x, y, non-member x, y) of task ``t``."""
    x, y = stream.client_data(t, c)
    tx, ty, idx = excl.training_data(x, y, t, c)
    is_f = _isin(ty, f.classes) | _isin(idx, f.samples.get(c, {}).get(t, []))
    if c in f.clients:
        is_f[:] = True
    hx, hy, hidx = excl.heldout_data(x, y, t, c)
    is_n = _isin(hy, f.classes) | _isin(hidx, f.nonmembers.get(c, {}).get(t, []))
    if c in f.clients or f.any_nonmember:
        is_n[:] = True
    return tx[is_f], ty[is_f], tx[~is_f], ty[~is_f], hx[is_n], hy[is_n]


def build_eval_sets(stream: Stream, tasks: list[int], forgotten: Forgotten, excl: Exclusions,
                    excluded_clients: list[int], per_set: int, seed: int) -> EvalSets:
    """The evaluation sets of one job (at most ``per_set`` samples per set, spread over the tasks).

    ``excl``: the run's held-out fraction and what earlier jobs forgot (dropped everywhere);
    ``excluded_clients``: clients that left earlier.
    """
    per_task = max(1, per_set // max(len(tasks), 1))
    out = EvalSets({k: [] for k in SETS})
    for t in tasks:
        acc: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {
            k: ([], []) for k in ("forget", "retain", "nonmember")}
        for c in range(stream.num_clients):
            if c in excluded_clients:
                continue
            fx, fy, rx, ry, nx, ny = _client_parts(stream, t, c, forgotten, excl)
            for name, (xx, yy) in (("forget", (fx, fy)), ("retain", (rx, ry)), ("nonmember", (nx, ny))):
                acc[name][0].append(xx)
                acc[name][1].append(yy)
        for name, (xs, ys) in acc.items():
            if xs:
                x, y = _cap(torch.cat(xs), torch.cat(ys), per_task, seed, "unlearn-eval", name, t)
                out.sets[name].append((t, x, y))
        x, y = stream.eval_data(t, None)
        keep = ~_isin(y, list(excl.classes))
        x, y = _cap(x[keep], y[keep], per_task, seed, "unlearn-eval", "test", t)
        out.sets["test"].append((t, x, y))
        f = _isin(y, forgotten.classes)
        out.sets["test_forget"].append((t, x[f], y[f]))
        out.sets["test_retain"].append((t, x[~f], y[~f]))
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


def report(model: nn.Module, sets: EvalSets, stream: Stream, device: torch.device) -> tuple[dict[str, Any], Outputs]:
    """Accuracies, membership-inference AUCs and per-task retain accuracy of one model; and its outputs."""
    mh = stream.multi_head
    res: dict[str, Any] = {}
    cache: Outputs = {}
    for name in SETS:
        cache[name] = outputs(model, sets.sets.get(name, []), mh, stream, device)
        if name != "nonmember":
            res[f"{name}_acc"] = accuracy(*cache[name])
    fl, nl = cache["forget"], cache["nonmember"]
    res["mia_auc_loss"] = _nan_none(mia_auc(per_sample_loss(*fl).numpy(), per_sample_loss(*nl).numpy()))
    res["mia_auc_entropy"] = _nan_none(roc_auc(-entropy(fl[0]).numpy(), -entropy(nl[0]).numpy()))
    res["retain_acc_per_task"] = {
        str(t): accuracy(*outputs(model, [(t, x, y)], mh, stream, device)) for t, x, y in sets.sets["test_retain"]
    }
    return res, cache


def calibrated_auc(model_out: Outputs, reference_out: Outputs) -> float | None:
    """AUC of the reference-calibrated loss attack: score = loss under the reference - loss under the model."""
    def score(name: str) -> np.ndarray:
        (lm, y), (lr, _) = model_out[name], reference_out[name]
        return (per_sample_loss(lr, y) - per_sample_loss(lm, y)).double().numpy()

    return _nan_none(roc_auc(score("forget"), score("nonmember")))


GAP_KEYS = ("forget_acc", "retain_acc", "test_acc", "test_forget_acc", "test_retain_acc", "mia_auc_loss")


def compare(after: dict[str, Any], oracle: dict[str, Any], out: Outputs, oracle_out: Outputs) -> dict[str, Any]:
    """Gap to the oracle: differences (method - oracle), KL(oracle || method) on test, the calibrated attack."""
    gap: dict[str, Any] = {}
    for k in GAP_KEYS:
        a, o = after.get(k), oracle.get(k)
        gap[k] = None if a is None or o is None else float(a) - float(o)
    t, ot = out["test"][0], oracle_out["test"][0]
    gap["test_kl"] = mean_kl(ot, t) if ot.shape == t.shape else None
    f, of = out["forget"][0], oracle_out["forget"][0]
    gap["forget_kl"] = mean_kl(of, f) if of.shape == f.shape else None
    gap["mia_auc_calibrated"] = calibrated_auc(out, oracle_out)
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
