"""A fixed-capacity reservoir buffer shared by the rehearsal methods (ER, DER++, A-GEM, ...)."""

from __future__ import annotations

from typing import Any

import torch


def rows_in(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """True for the rows of ``x`` that equal a row of ``reference`` (exact bytes: a stored copy of a sample)."""
    if x.shape[0] == 0 or reference.shape[0] == 0:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    ref = {r.tobytes() for r in reference.detach().cpu().reshape(reference.shape[0], -1).numpy()}
    rows = x.detach().cpu().reshape(x.shape[0], -1).numpy()
    return torch.tensor([r.tobytes() in ref for r in rows], dtype=torch.bool)


class ReservoirBuffer:
    """Episodic memory filled by reservoir sampling (Vitter, 1985).

    After ``n`` samples have been offered, each one is held with probability
    ``capacity / n``, whatever the order they came in: the memory stays a
    uniform sample of the client's whole stream without knowing its length.
    Everything is kept on the CPU so the buffer can go through ``state_dict()``.

    Parameters
    ----------
    capacity : int
        Maximum number of samples held (0 gives a buffer that never stores anything).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.seen = 0
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task_ids: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else int(self.y.shape[0])

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def has_logits(self) -> bool:
        return self.logits is not None

    def add(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        task_ids: torch.Tensor,
        logits: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """Offer a batch to the reservoir, one sample at a time in batch order."""
        if self.capacity == 0 or y.shape[0] == 0:
            self.seen += int(y.shape[0])
            return
        if not self.is_empty and (logits is None) != (self.logits is None):
            raise ValueError("a buffer stores logits for all samples or for none")
        new = {
            "x": x.detach().cpu(),
            "y": y.detach().cpu(),
            "task_ids": task_ids.detach().cpu().long(),
            "logits": None if logits is None else logits.detach().cpu(),
        }
        n = int(y.shape[0])
        # while not full, samples are appended in order; no random draw is needed
        free = max(self.capacity - len(self), 0)
        take = min(free, n)
        if take > 0:
            self._append({k: None if v is None else v[:take] for k, v in new.items()})
        rest = n - take
        if rest > 0:
            # sample i of the overflow is the (seen + take + i + 1)-th offered: keep it
            # at slot j ~ U{0 .. seen + take + i} when j < capacity (Algorithm R)
            totals = torch.arange(self.seen + take + 1, self.seen + n + 1, dtype=torch.float64)
            dev = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand(rest, generator=generator, dtype=torch.float64, device=dev).cpu()
            slots = (u * totals).floor().long()
            for i, j in enumerate(slots.tolist()):
                if j < self.capacity:
                    self._put(j, new, take + i)
        self.seen += n

    def _append(self, batch: dict[str, torch.Tensor | None]) -> None:
        def cat(old: torch.Tensor | None, add: torch.Tensor | None) -> torch.Tensor | None:
            if add is None:
                return None
            return add.clone() if old is None else torch.cat([old, add])

        self.x = cat(self.x, batch["x"])
        self.y = cat(self.y, batch["y"])
        self.task_ids = cat(self.task_ids, batch["task_ids"])
        self.logits = cat(self.logits, batch["logits"])

    def _put(self, j: int, batch: dict[str, torch.Tensor | None], i: int) -> None:
        """Overwrite slot ``j`` with sample ``i`` of ``batch``."""
        for key, src in batch.items():
            dst = getattr(self, key)
            if dst is not None and src is not None:
                dst[j] = src[i]

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``min(n, len(self))`` distinct samples: keys ``x, y, task_ids, index`` (+ ``logits``)."""
        if self.is_empty:
            raise ValueError("cannot sample from an empty buffer")
        assert self.x is not None and self.y is not None and self.task_ids is not None
        dev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(len(self), generator=generator, device=dev).cpu()[: min(n, len(self))]
        out = {"x": self.x[idx], "y": self.y[idx], "task_ids": self.task_ids[idx], "index": idx}
        if self.logits is not None:
            out["logits"] = self.logits[idx]
        return out

    def drop_classes(self, classes: list[int]) -> int:
        """Remove every held sample whose label is in ``classes``; return how many were removed.

        The freed slots are refilled by later ``add`` calls (appended while not full).
        """
        if self.y is None or not classes:
            return 0
        return self.drop_rows(torch.isin(self.y, torch.as_tensor(classes, dtype=self.y.dtype)))

    def drop_rows(self, drop: torch.Tensor) -> int:
        """Remove the held samples where the boolean mask ``drop`` is True (forgotten samples); return how many."""
        if self.y is None or not bool(drop.any()):
            return 0
        keep = ~drop.cpu()
        removed = int(drop.sum())
        for key in ("x", "y", "task_ids", "logits"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, value[keep].clone())
        if self.y is not None and self.y.shape[0] == 0:
            self.x = self.y = self.task_ids = self.logits = None
        return removed

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"capacity": self.capacity, "seen": self.seen}
        for key in ("x", "y", "task_ids", "logits"):
            value = getattr(self, key)
            if value is not None:
                state[key] = value.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # the capacity comes from the YAML, not the saved state: a changed config wins
        self.seen = int(state.get("seen", 0))
        for key in ("x", "y", "task_ids", "logits"):
            value = state.get(key)
            setattr(self, key, None if value is None else value.detach().cpu()[: self.capacity].clone())
        if self.y is not None and self.y.shape[0] == 0:
            self.x = self.y = self.task_ids = self.logits = None
