"""flwr-datasets' partitioners as a stream partition scheme (``stream.partition: flwr``).

A partitioner of ``flwr_datasets.partitioner`` splits a Hugging Face ``Dataset``;
a continual stream partitions each task's label array separately. So each task's
labels become a two-column ``Dataset`` (``label`` and the sample's position) and
the chosen partitioner splits it; the positions of each partition are the
client's indices. The table is shuffled first (seeded), as ``FederatedDataset``
shuffles a split before partitioning it (``shuffle=True``), so that e.g.
``IidPartitioner``'s contiguous shards are random. The partitioner and its arguments come from
``stream.flwr_partitioner``, e.g. ``{name: DirichletPartitioner, alpha: 0.5,
min_partition_size: 0}``; ``num_partitions`` is the number of clients,
``partition_by`` defaults to ``"label"`` and ``seed`` to the stream's per-task
partition seed, so runs stay reproducible by the run seed. Needs the ``hf``
extra: ``pip install 'fedcl[hf]'``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from fedcl.errors import ConfigError

KEY = "stream.flwr_partitioner"


def _partitioner_class(name: Any) -> type:
    try:
        from flwr_datasets import partitioner as module
    except ImportError as exc:
        raise ConfigError("stream.partition", "flwr", "needs flwr-datasets: pip install 'fedcl[hf]'") from exc
    cls = getattr(module, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, module.Partitioner)) or cls is module.Partitioner:
        names = sorted(n for n in dir(module) if n.endswith("Partitioner") and n != "Partitioner")
        raise ConfigError(f"{KEY}.name", name, f"a partitioner of flwr_datasets.partitioner: {names}")
    return cls


def flwr_partition(labels: np.ndarray, num_partitions: int, spec: Any, *, seed: int) -> list[np.ndarray]:
    """Split ``labels`` (one task's) over ``num_partitions`` clients with a flwr-datasets partitioner.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels ``[N]``.
    num_partitions : int
        Number of clients.
    spec : dict
        ``{"name": <Partitioner class name>, **its keyword arguments}``.
    seed : int
        Passed as ``seed`` when the partitioner takes one and ``spec`` does not set it.

    Returns
    -------
    list[np.ndarray]
        Per client, sorted int64 indices into ``labels``. Some partitioners
        leave samples out (``ShardPartitioner`` drops an incomplete last shard).

    Raises
    ------
    ConfigError
        No or an unknown partitioner, or arguments the partitioner rejects.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(KEY, spec, "a mapping with the partitioner's name and arguments, e.g. "
                          "{name: DirichletPartitioner, alpha: 0.5}")
    import datasets

    cls = _partitioner_class(spec["name"])
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if "partition_by" in params:
        kwargs.setdefault("partition_by", "label")
    if "seed" in params:
        kwargs.setdefault("seed", int(seed))
    labels = np.asarray(labels, dtype=np.int64)
    table = datasets.Dataset.from_dict({"label": labels, "_position": np.arange(len(labels), dtype=np.int64)})
    table = table.shuffle(seed=int(seed) % 2**32)
    try:
        part = cls(num_partitions=num_partitions, **kwargs)
        part.dataset = table
        out = [np.sort(np.asarray(part.load_partition(i)["_position"], dtype=np.int64))
               for i in range(num_partitions)]
    except (TypeError, ValueError) as exc:
        raise ConfigError(KEY, spec, f"{cls.__name__} rejected it for {num_partitions} clients and "
                          f"{len(labels)} samples: {exc}") from exc
    if len(np.unique(np.concatenate(out))) != sum(len(p) for p in out):
        raise ConfigError(KEY, spec, f"{cls.__name__} gave overlapping partitions; a stream needs disjoint ones")
    return out
