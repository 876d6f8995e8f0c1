"""Every random draw of a run derives its generator here, from the run seed and a tag naming its purpose.

A draw is seeded from (run seed, purpose, client, round, ...) rather than taken from a
stream shared across clients, so its value does not depend on which process serves a
client, in what order Ray schedules clients, or whether the run was resumed. Two
schemes, both kept bit-for-bit as earlier versions drew them:

* :func:`numpy_rng` / :func:`seed_int`: NumPy's ``SeedSequence`` over
  ``[seed, TAG, ...]`` with an integer tag below, for the stream (class order,
  permutations, partitions, evaluation subsets), the schedules and blurry boundaries;
* :func:`derive_seed`: SHA-256 of ``"seed/purpose/..."`` with a string purpose, for
  the clients' per-round draws (batch order, dropout, GPSE sketches, unlearning
  subsets, fault injection) and the server's (client sampling, DP noise).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# integer tags: one independent NumPy stream per use
TAG_CLASS_ORDER, TAG_PERMUTATION, TAG_PARTITION, TAG_EVAL = 1, 2, 3, 4  # the stream
TAG_AUGMENT = 5  # clients' train-time crop / flip (stream.augment), per (client, round, task)
TAG_OFFSET, TAG_ORDER, TAG_SUBSET, TAG_REOCCUR, TAG_SAMPLE = 11, 12, 13, 14, 15  # schedules
TAG_TASK_CLIENTS = 16  # heterogeneous lockstep: the clients of each task
TAG_BLURRY = 21  # Si-Blurry boundaries


def numpy_rng(seed: int, *parts: int) -> np.random.Generator:
    """A NumPy generator seeded by ``(seed, tag, ...)``: one independent stream per use."""
    return np.random.default_rng([seed % 2**63, *parts])


def seed_int(seed: int, *parts: int) -> int:
    """A 32-bit integer seed from ``(seed, tag, ...)`` (for code that takes an int seed)."""
    return int(np.random.SeedSequence([seed % 2**63, *parts]).generate_state(1)[0])


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (run seed, purpose, client, round, ...): independent of scheduling order."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def torch_generator(*parts: int | str) -> torch.Generator:
    """A CPU torch generator seeded by :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


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
