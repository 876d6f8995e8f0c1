"""Sample-level forget sets: random ones, and the worst case ("Challenging Forgets").

A ``random`` request forgets ``target`` training samples drawn uniformly from the
candidates: the training data (held-out samples and everything forgotten before
excluded) of the seen tasks of the clients still in the federation. It depends on the
seed and the requests only, so the retrain oracle draws the same set before round 1.

A ``worst`` request forgets the ``target`` candidates that are hardest to unlearn.
Fan, Liu, Hero and Liu, "Challenging Forgets: Unveiling the Worst-Case Forget Sets in
Machine Unlearning" (ECCV 2024; code: github.com/OPTML-Group/Unlearn-WorstCase,
``data-wise/unlearn/impl.py:optimize_select``) pose it as a bi-level problem: the upper
level picks sample weights ``w`` (``sum w = k``, ``0 <= w <= 1``) minimising
``sum_i w_i l_i(theta_u(w))``, the loss of the chosen samples after the lower level has
unlearned them (``theta_u``: fine-tuning on the rest), so the chosen samples are those
the unlearning fails to move; the authors alternate projected gradient steps on ``w``
(whose gradient is the per-sample loss after unlearning) with unlearning. The cheap
approximation here is the first upper-level step from uniform weights with zero
lower-level steps: the gradient is the per-sample loss under the model at the request
round, and the projected step keeps the ``k`` samples of lowest loss, the ones the
model has memorised best. This needs the trained model, which the retrain oracle never
has: the first run that serves the request (any method but ``retrain``) writes the
chosen set to ``<run>/unlearning/forget-sets.json``; the oracle and the other methods
read it (``unlearning.forget_sets``).

Non-members for the membership-inference attack come from the held-out samples
(:mod:`fedcl.unlearning.data`) of the same clients and tasks; for a worst-case set they
are chosen by the same rule (the ``k`` held-out samples of lowest loss), so the attack
compares like with like.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fedcl.data import Stream
from fedcl.errors import ConfigError
from fedcl.seeding import derive_seed
from fedcl.trainer import task_logits
from fedcl.unlearning.data import Exclusions, Samples, decode_samples, encode_samples
from fedcl.unlearning.requests import Request

FILE = "forget-sets.json"
Pool = list[tuple[int, int, torch.Tensor]]  # (client, task, indices into the client's task data)


def request_key(r: Request) -> str:
    return f"{r.round}/{r.kind}/{r.target}"


def candidates(stream: Stream, excl: Exclusions, clients: list[int], tasks: list[int],
               heldout: bool = False) -> Pool:
    """Per (client, task) the indices of the training samples (or, ``heldout``, the held-out ones) left."""
    out: Pool = []
    for c in clients:
        for t in tasks:
            x, y = stream.client_data(t, c)
            _, _, idx = excl.heldout_data(x, y, t, c) if heldout else excl.training_data(x, y, t, c)
            out.append((c, t, idx))
    return out


def _to_samples(pool: Pool, chosen: np.ndarray) -> Samples:
    """The samples at flat positions ``chosen`` of ``pool``."""
    out: Samples = {}
    offsets = np.cumsum([0] + [int(idx.numel()) for _, _, idx in pool])
    for pos in np.sort(chosen):
        part = int(np.searchsorted(offsets, pos, side="right") - 1)
        c, t, idx = pool[part]
        out.setdefault(c, {}).setdefault(t, []).append(int(idx[pos - offsets[part]]))
    return out


def random_set(pool: Pool, n: int, seed: int, request: Request) -> Samples:
    """``n`` samples of the pool drawn uniformly without replacement, from (seed, request)."""
    total = sum(int(idx.numel()) for _, _, idx in pool)
    if total < n:
        raise ConfigError("unlearning.requests", request.to_dict(),
                          f"at most {total} samples (the training samples left at round {request.round})")
    rng = np.random.default_rng(derive_seed(seed, "forget-set", request_key(request)))
    return _to_samples(pool, rng.choice(total, size=n, replace=False))


@torch.no_grad()
def _losses(model: torch.nn.Module, stream: Stream, pool: Pool, device: torch.device) -> np.ndarray:
    was = model.training
    model.eval()
    out = []
    for c, t, idx in pool:
        x, y = stream.client_data(t, c)
        x, y = x[idx].to(device), y[idx].to(device)
        classes = list(stream.tasks[t].classes) if stream.multi_head else None
        logits = task_logits(model, x, t, stream.multi_head, classes)
        out.append(F.cross_entropy(logits, y, reduction="none").double().cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros(0)


def lowest_loss(model: torch.nn.Module, stream: Stream, pool: Pool, n: int, device: torch.device) -> Samples:
    """The ``n`` samples of the pool with the lowest loss under ``model`` (ties broken by position)."""
    losses = _losses(model, stream, pool, device)
    return _to_samples(pool, np.argsort(losses, kind="stable")[: min(n, losses.size)])


class ForgetSets:
    """The sample sets of a run's sample-level requests, and the file that hands worst-case sets on.

    Parameters
    ----------
    path : str | Path | None
        ``unlearning.forget_sets`` (read), or None.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.sets: dict[str, dict[str, Any]] = {}
        self.given = path is not None
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError("unlearning.forget_sets", str(path), f"an existing {FILE} of an earlier run")
            self.sets = json.loads(p.read_text())["sets"]

    def get(self, r: Request) -> tuple[Samples, Samples] | None:
        """The (forget, non-member) sets of a request, if known."""
        entry = self.sets.get(request_key(r))
        return None if entry is None else (decode_samples(entry["samples"]), decode_samples(entry["nonmembers"]))

    def put(self, r: Request, samples: Samples, nonmembers: Samples) -> None:
        self.sets[request_key(r)] = {"samples": encode_samples(samples), "nonmembers": encode_samples(nonmembers)}

    def write(self, run_dir: Path, fingerprint: str) -> Path:
        path = run_dir / "unlearning" / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fingerprint": fingerprint, "sets": self.sets}, indent=1, sort_keys=True))
        return path
