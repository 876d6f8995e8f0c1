"""Every random draw of a run derives from the run seed and a tag naming what it is for.

A draw is seeded from (run seed, tag, client, round, ...) rather than from a stream
shared across clients, so its value does not depend on which process serves the
client, in what order Ray schedules clients, or whether the run was resumed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (run seed, tag, client, round, ...): independent of scheduling order."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_globals(*parts: int | str) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators from ``parts``.

    For code that draws from the global generators and cannot be handed a generator:
    Flower's client mods (``LocalDpMod``'s noise, SecAgg+'s stochastic rounding) and
    dropout masks.
    """
    seed = derive_seed(*parts)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded_numpy(*parts: int | str) -> Iterator[None]:
    """NumPy's global generator seeded from ``parts`` inside the block, restored after it.

    The server's DP noise (Flower's wrappers draw from ``np.random``) is then a
    function of (seed, round) only: the same after a resume as in the uninterrupted run.
    """
    saved = np.random.get_state()
    np.random.seed(derive_seed(*parts) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(saved)
