"""A client's training data once deletion requests exist: held-out non-members, forgotten classes and samples.

Every part of a run that reads a client's training data goes through
:meth:`Exclusions.training_data` (the ``train`` handler, the ``query.unlearn``
handler, the server's evaluation sets; a feature that computes on client data, such as
FOT's GPSE, should too), so that what is forgotten is forgotten everywhere:

* **held-out non-members** (``unlearning.holdout``): in a run with deletion requests a
  seeded fraction of every client's data of every task is split off *before training*
  and never trains the model. These samples come from the same clients, classes and
  tasks as the data a request forgets, so a membership-inference attack that compares
  forgotten samples with them measures memorisation, not distribution shift;
* **forgotten classes** (served class requests): dropped from every client's data;
* **forgotten samples** (served sample requests): identified by (client, task, index
  into :meth:`fedcl.data.Stream.client_data`), dropped from their client's data.

Sample sets travel as JSON (:func:`encode_samples` / :func:`decode_samples`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedcl.seeding import derive_seed

Samples = dict[int, dict[int, list[int]]]  # client -> task -> indices into the client's task data


def holdout_mask(n: int, fraction: float, seed: int, task: int, client: int) -> torch.Tensor:
    """True for the ``round(fraction * n)`` samples held out of training, drawn from (seed, task, client)."""
    mask = torch.zeros(n, dtype=torch.bool)
    k = int(round(fraction * n))
    if k > 0:
        rng = np.random.default_rng(derive_seed(seed, "unlearn-holdout", task, client))
        mask[torch.from_numpy(rng.choice(n, size=min(k, n), replace=False))] = True
    return mask


def encode_samples(samples: Samples) -> str:
    """Canonical JSON of a sample set (sorted keys and indices)."""
    return json.dumps({str(c): {str(t): sorted(int(i) for i in idx) for t, idx in sorted(tasks.items()) if idx}
                       for c, tasks in sorted(samples.items())}, sort_keys=True, separators=(",", ":"))


def decode_samples(raw: str | dict[str, Any] | None) -> Samples:
    """The sample set of :func:`encode_samples` (an empty set for ``None`` / empty)."""
    if not raw:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    return {int(c): {int(t): [int(i) for i in idx] for t, idx in tasks.items()} for c, tasks in data.items()}


def merge_samples(*sets: Samples) -> Samples:
    """The union of sample sets."""
    out: dict[int, dict[int, set[int]]] = {}
    for s in sets:
        for c, tasks in s.items():
            for t, idx in tasks.items():
                out.setdefault(c, {}).setdefault(t, set()).update(idx)
    return {c: {t: sorted(idx) for t, idx in tasks.items()} for c, tasks in out.items()}


def count_samples(samples: Samples) -> int:
    return sum(len(idx) for tasks in samples.values() for idx in tasks.values())


def _isin(values: torch.Tensor, members: list[int]) -> torch.Tensor:
    return torch.isin(values, torch.as_tensor(members or [-1], dtype=values.dtype, device=values.device))


@dataclass(frozen=True)
class Exclusions:
    """What a client's data is without its held-out part and without everything forgotten so far.

    Parameters
    ----------
    seed : int
        The run seed (the held-out draw).
    holdout : float
        Fraction of every client's task data held out of training (0 in runs without requests).
    classes : tuple[int, ...]
        Forgotten classes.
    samples : Samples
        Forgotten samples.
    """

    seed: int
    holdout: float = 0.0
    classes: tuple[int, ...] = ()
    samples: Samples = field(default_factory=dict)

    @classmethod
    def of_run(cls, cfg: Any, classes: list[int] | None = None, samples: Samples | None = None) -> Exclusions:
        """The exclusions of a run config (``unlearning.holdout`` applies only when the run has requests)."""
        ucfg = cfg.unlearning
        holdout = float(ucfg["holdout"]) if ucfg["requests"] else 0.0
        return cls(int(cfg.seed), holdout, tuple(sorted(classes or [])), dict(samples or {}))

    def indices(self, y: torch.Tensor, task: int, client: int) -> torch.Tensor:
        """Indices (into the client's task data) of the samples that may train."""
        keep = ~holdout_mask(int(y.shape[0]), self.holdout, self.seed, task, client).to(y.device)
        keep &= ~_isin(y, list(self.classes))
        gone = self.samples.get(client, {}).get(task)
        if gone:
            keep[torch.as_tensor(gone, dtype=torch.long, device=y.device)] = False
        return torch.nonzero(keep).flatten()

    def training_data(self, x: torch.Tensor, y: torch.Tensor, task: int,
                      client: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, index)`` of the samples that may train (index: position in the client's task data)."""
        idx = self.indices(y, task, client)
        return x[idx], y[idx], idx

    def heldout_data(self, x: torch.Tensor, y: torch.Tensor, task: int,
                     client: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, index)`` of the held-out samples (never trained on), without forgotten classes."""
        mask = holdout_mask(int(y.shape[0]), self.holdout, self.seed, task, client).to(y.device)
        mask &= ~_isin(y, list(self.classes))
        idx = torch.nonzero(mask).flatten()
        return x[idx], y[idx], idx


def sample_rows(stream: Any, samples: Samples, client: int) -> torch.Tensor:
    """The inputs of a client's samples in ``samples`` (to find stored copies, e.g. in a replay buffer)."""
    parts = [stream.client_data(t, client)[0][torch.as_tensor(idx, dtype=torch.long)]
             for t, idx in sorted(samples.get(client, {}).items()) if idx]
    if not parts:
        return torch.zeros(0, *stream.in_shape)
    return torch.cat(parts)
