"""Selective Synaptic Dampening, federated: dampen the parameters that matter far more to the forget data."""

from __future__ import annotations

import torch

from fedcl.errors import ConfigError
from fedcl.unlearning import protocol
from fedcl.unlearning.base import Federation, State, Unlearner, UnlearnJob

REFERENCES = ("retain", "full")


def dampen(state: State, fisher_ref: State, fisher_forget: State, alpha: float, lam: float) -> tuple[State, float]:
    """SSD's step: theta_i <- beta_i theta_i where F_f,i > alpha F_ref,i, beta_i = min(lam F_ref,i / F_f,i, 1).

    Returns the new weights and the fraction of parameters dampened.
    """
    out = dict(state)
    hit, total = 0, 0
    for name, ff in fisher_forget.items():
        fr = fisher_ref[name].to(ff)
        sel = ff > alpha * fr
        beta = torch.clamp(lam * fr / ff.clamp_min(1e-30), max=1.0)
        w = state[name]
        out[name] = torch.where(sel, w * beta.to(w.dtype), w)
        hit += int(sel.sum().item())
        total += sel.numel()
    return out, hit / max(total, 1)


class SSD(Unlearner):
    """Retrain-free unlearning by Selective Synaptic Dampening, with only sums over clients.

    Foster, Schoepf and Brintrup, "Fast Machine Unlearning Without Retraining Through
    Selective Synaptic Dampening" (AAAI 2024). Parameter importance is the diagonal of
    the Fisher information, E[(d log p / d theta)^2]. Every client sends the sum over
    its samples of the squared per-sample gradients on its forget data and on its
    retain data, and the counts; the server needs only the sums over clients (so the
    query can go through secure aggregation), divides by the total counts and dampens
    every parameter whose forget importance exceeds ``alpha`` times its reference
    importance by ``beta = min(lambda F_ref / F_forget, 1)``. One communication round.

    Parameters
    ----------
    alpha : float, default 10.0
        Selection threshold (paper: 10).
    lam : float, default 1.0
        Dampening constant lambda (paper: 1); YAML key ``lambda``.
    reference : str, default "retain"
        ``retain``: F_ref is the retain data's Fisher (as in the issue); ``full``: the
        paper's full training data (retain + forget sums). With a forget set that is a
        large share of the data (a class of a 2-class task) ``full`` rarely selects anything.
    max_samples : int | None, default 256
        Per client and task, samples of each part used for the Fisher.

    Data access: both Fishers come from the same data, the data each client may use
    under ``unlearning.data_access`` (``history``: every seen task; ``buffer``: the
    current task and the replay buffer), so forget and reference importances are
    comparable. (An earlier version took the forget Fisher over every seen task and
    the reference over the current task only: a client request then dampened whatever
    the old tasks needed.)
    """

    name = "ssd"

    def __init__(self, alpha: float = 10.0, lam: float = 1.0, reference: str = "retain",
                 max_samples: int | None = 256) -> None:
        if not alpha > 0:
            raise ConfigError("unlearning.alpha", alpha, "a number > 0")
        if not lam > 0:
            raise ConfigError("unlearning.lam", lam, "a number > 0")
        if reference not in REFERENCES:
            raise ConfigError("unlearning.reference", reference, f"one of {list(REFERENCES)}")
        self.alpha, self.lam, self.reference, self.max_samples = float(alpha), float(lam), reference, max_samples
        self.dampened_fraction = 0.0

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        clients = sorted(set(job.retain_clients) | set(job.forget_clients))
        opts = job.forget_options("fisher", max_samples=self.max_samples)
        sums, metrics = fed.sums("fisher", clients, state, opts)
        nf, nr = float(metrics.get(protocol.NUM_FORGET, 0.0)), float(metrics.get(protocol.NUM_RETAIN, 0.0))
        if nf == 0 or nr == 0:
            return state, 1  # nothing to forget (or nothing to compare with): leave the model
        ff = {k: v / nf for k, v in sums[protocol.FISHER_FORGET].items()}
        if self.reference == "full":
            fr = {k: (v + sums[protocol.FISHER_FORGET][k]) / (nf + nr) for k, v in sums[protocol.FISHER_RETAIN].items()}
        else:
            fr = {k: v / nr for k, v in sums[protocol.FISHER_RETAIN].items()}
        new, self.dampened_fraction = dampen(state, fr, ff, self.alpha, self.lam)
        return new, 1
