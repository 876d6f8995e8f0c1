"""flwr-datasets' partitioners as stream partition schemes (``stream.partition: flwr_dirichlet`` ...).

A partitioner of ``flwr_datasets.partitioner`` splits a Hugging Face ``Dataset``;
a continual stream partitions each task's label array separately. So each task's
labels become a two-column ``Dataset`` (``label`` and the sample's position) and
the chosen partitioner splits it; the positions of each partition are the
client's indices. The table is shuffled first (seeded), as ``FederatedDataset``
shuffles a split before partitioning it (``shuffle=True``), so that e.g.
``IidPartitioner``'s contiguous shards are random. ``stream.partition`` names the
partitioner (:data:`fedcl.config.schema.FLWR_PARTITIONERS`: ``flwr_iid``,
``flwr_dirichlet``, ``flwr_shard``, ``flwr_pathological``, ``flwr_linear``,
``flwr_square``, ``flwr_exponential``) and ``stream.flwr_partitioner`` holds its
keyword arguments, e.g. ``{alpha: 0.5, min_partition_size: 0}``. fedcl sets
``num_partitions`` (the clients), ``partition_by`` (``"label"``) and ``seed``
(the stream's per-task partition seed, so runs stay reproducible by the run
seed). Needs the ``hf`` extra: ``pip install 'fedcl[hf]'``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from fedcl.config.schema import FLWR_PARTITIONERS
from fedcl.errors import ConfigError

KEY = "stream.flwr_partitioner"
SET_BY_FEDCL = ("num_partitions", "partition_by", "seed")


def _partitioner_class(partition: str) -> type:
    try:
        from flwr_datasets import partitioner as module
    except ImportError as exc:
        raise ConfigError("stream.partition", partition, "needs flwr-datasets: pip install 'fedcl[hf]' (or use "
                          "iid, shards or dirichlet)") from exc
    return getattr(module, FLWR_PARTITIONERS[partition])  # type: ignore[no-any-return]


def check_partitioner(partition: str, args: dict[str, Any] | None) -> None:
    """Refuse ``stream.flwr_partitioner`` arguments the partitioner does not take, or lacks, before any run."""
    cls = _partitioner_class(partition)
    params = inspect.signature(cls).parameters
    given = dict(args or {})
    for key, value in given.items():
        if key in SET_BY_FEDCL:
            raise ConfigError(f"{KEY}.{key}", value, f"not settable: fedcl sets {list(SET_BY_FEDCL)} "
                              "(the clients, the label column, the run's partition seed)")
        if key not in params:
            known = [p for p in params if p not in SET_BY_FEDCL]
            raise ConfigError(f"{KEY}.{key}", value, f"unknown argument of {cls.__name__}; it takes {known}")
    missing = [name for name, p in params.items()
               if p.default is inspect.Parameter.empty and name not in SET_BY_FEDCL and name not in given]
    if missing:
        raise ConfigError(KEY, args, f"a mapping with {missing} ({cls.__name__}'s required arguments), e.g. "
                          f"{{{missing[0]}: ...}}")


def flwr_partition(
    labels: np.ndarray, num_partitions: int, partition: str, args: dict[str, Any] | None, *, seed: int
) -> list[np.ndarray]:
    """Split ``labels`` (one task's) over ``num_partitions`` clients with a flwr-datasets partitioner.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels ``[N]``.
    num_partitions : int
        Number of clients.
    partition : str
        A key of :data:`~fedcl.config.schema.FLWR_PARTITIONERS` (``"flwr_dirichlet"``).
    args : dict | None
        The partitioner's further keyword arguments (``stream.flwr_partitioner``).
    seed : int
        Passed as ``seed`` when the partitioner takes one; also shuffles the table.

    Returns
    -------
    list[np.ndarray]
        Per client, sorted int64 indices into ``labels``. Some partitioners
        leave samples out (``ShardPartitioner`` drops an incomplete last shard).

    Raises
    ------
    ConfigError
        Arguments the partitioner rejects for this task's labels and clients.
    """
    import datasets

    check_partitioner(partition, args)
    cls = _partitioner_class(partition)
    params = inspect.signature(cls).parameters
    kwargs = dict(args or {})
    if "partition_by" in params:
        kwargs["partition_by"] = "label"
    if "seed" in params:
        kwargs["seed"] = int(seed)
    labels = np.asarray(labels, dtype=np.int64)
    table = datasets.Dataset.from_dict({"label": labels, "_position": np.arange(len(labels), dtype=np.int64)})
    table = table.shuffle(seed=int(seed) % 2**32)
    try:
        part = cls(num_partitions=num_partitions, **kwargs)
        part.dataset = table
        out = [np.sort(np.asarray(part.load_partition(i)["_position"], dtype=np.int64))
               for i in range(num_partitions)]
    except (TypeError, ValueError) as exc:
        raise ConfigError(KEY, args, f"{cls.__name__} rejected it for {num_partitions} clients and "
                          f"{len(labels)} samples: {exc}") from exc
    if len(np.unique(np.concatenate(out))) != sum(len(p) for p in out):
        raise ConfigError(KEY, args, f"{cls.__name__} gave overlapping partitions; a stream needs disjoint ones")
    return out
