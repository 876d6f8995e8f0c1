"""Split a label array over clients: IID, label shards (McMahan et al.) or Dirichlet.

Pure numpy on purpose, not flwr-datasets: its partitioners operate on Hugging Face
``datasets`` objects, while a continual stream partitions the index array of every
task separately and must work offline with IDX files. The algorithms follow
flwr-datasets' ``IidPartitioner``, ``ShardPartitioner`` and ``DirichletPartitioner``.
Every scheme returns disjoint index arrays whose union is all of ``labels``.
"""

from __future__ import annotations

import numpy as np

from fedcl.config.schema import PARTITIONS
from fedcl.errors import ConfigError

# Dirichlet draws are repeated until every client has min_samples; past this many
# tries the configuration is practically infeasible and a re-draw will not help.
MAX_DIRICHLET_TRIES = 100


def partition_labels(
    labels: np.ndarray,
    num_partitions: int,
    scheme: str,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_samples: int = 1,
    seed: int = 0,
) -> list[np.ndarray]:
    """Partition sample indices over ``num_partitions`` clients.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels ``[N]``.
    num_partitions : int
        Number of clients (1 <= num_partitions <= N).
    scheme : str
        ``"iid"`` (seeded shuffle, equal split), ``"shards"`` (sort by label, cut
        into ``num_partitions * shards_per_client`` shards, deal ``shards_per_client``
        to each client) or ``"dirichlet"`` (per class, proportions ~ Dir(alpha)).
    alpha : float
        Dirichlet concentration (> 0); smaller is more skewed.
    shards_per_client : int
        Label shards per client (scheme ``"shards"``).
    min_samples : int
        Dirichlet re-draws until every client holds at least this many samples.
    seed : int
        Seeds the split: same seed, same partition.

    Returns
    -------
    list[np.ndarray]
        Per client, sorted int64 indices into ``labels``; disjoint, union = all.

    Raises
    ------
    ConfigError
        Unknown scheme, ``alpha <= 0``, more clients than samples or shards, or a
        ``min_samples`` that no Dirichlet draw reaches.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if scheme not in PARTITIONS:
        raise ConfigError("stream.partition", scheme, f"one of {list(PARTITIONS)}")
    if num_partitions < 1 or num_partitions > n:
        raise ConfigError(
            "federation.num_clients", num_partitions,
            f"an integer in [1, {n}]: a task has {n} training samples to share; use fewer clients or tasks",
        )
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), num_partitions)
    elif scheme == "shards":
        parts = _shards(labels, num_partitions, shards_per_client, rng)
    else:
        parts = _dirichlet(labels, num_partitions, alpha, min_samples, rng)
    return [np.sort(p).astype(np.int64) for p in parts]


def _shards(labels: np.ndarray, num_partitions: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    if per_client < 1:
        raise ConfigError("stream.shards_per_client", per_client, "an integer >= 1")
    num_shards = num_partitions * per_client
    if num_shards > len(labels):
        raise ConfigError(
            "stream.shards_per_client", per_client,
            f"at most {len(labels) // num_partitions}: {num_partitions} clients x {per_client} shards "
            f"exceed the task's {len(labels)} samples",
        )
    # shuffle first so which samples of a class land in a shard is random; the stable
    # sort then groups by label as in McMahan et al.
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(order, num_shards)  # sizes differ by <= 1: every sample is used
    deal = rng.permutation(num_shards).reshape(num_partitions, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in deal]


def _dirichlet(
    labels: np.ndarray, num_partitions: int, alpha: float, min_samples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    if not alpha > 0:
        raise ConfigError("stream.alpha", alpha, "a number > 0 (smaller = more label skew)")
    if min_samples * num_partitions > len(labels):
        raise ConfigError(
            "stream.min_samples_per_client", min_samples,
            f"at most {len(labels) // num_partitions}: {num_partitions} clients share {len(labels)} samples",
        )
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
        for idx in by_class:
            idx = rng.permutation(idx)
            props = rng.dirichlet(np.full(num_partitions, float(alpha)))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(np.int64)
            for p, chunk in enumerate(np.split(idx, cuts)):
                parts[p].append(chunk)
        out = [np.concatenate(p) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise ConfigError(
        "stream.min_samples_per_client", min_samples,
        f"reachable: {MAX_DIRICHLET_TRIES} Dirichlet(alpha={alpha}) draws over {num_partitions} clients "
        f"left a client with fewer samples; lower it, raise stream.alpha or use fewer clients",
    )
