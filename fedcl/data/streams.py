"""Continual task streams: tasks over a base dataset and each client's share of every task.

A :class:`Stream` is derived from (stream config, number of clients, seed) alone, so
every Ray actor and the server rebuild the same one locally and no data travels in
messages. Both the base dataset and the built stream are cached per process:
``build_stream`` is called every round and must be cheap after the first call.
Base images stay uint8 (real data) and are normalised only when a client's or an
evaluation slice is materialised, which keeps a process at ~50 MB for Fashion-MNIST.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedcl.config.schema import Stream as StreamConfig
from fedcl.config.schema import Synthetic
from fedcl.data.blurry import blur_parts, blurry_classes, check_blurry, client_proportions
from fedcl.data.idx import load_idx_folder
from fedcl.data.partition import partition_labels
from fedcl.data.slice_cache import SliceCache
from fedcl.data.synthetic import make_synthetic
from fedcl.errors import ConfigError
from fedcl.seeding import TAG_CLASS_ORDER, TAG_EVAL, TAG_PARTITION, TAG_PERMUTATION, numpy_rng, seed_int


@dataclass
class Task:
    """One task of a stream.

    Parameters
    ----------
    task_id : int
        0-based position in the stream.
    classes : list[int]
        The labels present in this task.
    permutation : torch.Tensor | None, default None
        Pixel permutation (int64, over flattened pixels) applied to every input
        of this task; None = inputs unchanged.
    """

    task_id: int
    classes: list[int]
    permutation: torch.Tensor | None = None


@dataclass(frozen=True)
class _Base:
    """A loaded base dataset and how to normalise it."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    in_shape: tuple[int, ...]
    num_classes: int
    mean: float  # on the [0, 1] scale of uint8 images; 0 for float data
    std: float


_STATS_CHUNK = 1 << 20  # pixels per bincount: its int64 copy stays in cache (4x less CPU than one 47M-pixel pass)


def _uint8_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels on the [0, 1] scale, via a histogram (no float copy of the data).

    Exact (integer counts), so the same normalisation whatever the chunking; every process
    that loads the data (launcher, server, each Ray actor) pays it before round 1.
    """
    flat = x.reshape(-1)
    counts_int = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, _STATS_CHUNK):
        counts_int += np.bincount(flat[start:start + _STATS_CHUNK], minlength=256)
    counts = counts_int.astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    var = float((counts * (values - mean) ** 2).sum() / counts.sum())
    return mean, max(var, 1e-12) ** 0.5


@functools.lru_cache(maxsize=4)
def _load_base(dataset: str, data_dir: str | None, synthetic_json: str) -> _Base:
    """Load a base dataset once per process (key: dataset, folder, synthetic settings)."""
    if dataset == "synthetic":
        syn = Synthetic.model_validate_json(synthetic_json)
        shape = tuple(syn.image_shape)
        xtr, ytr, xte, yte = make_synthetic(syn.num_classes, shape, syn.train_per_class, syn.test_per_class,
                                            syn.noise, syn.seed)
        return _Base(xtr, ytr, xte, yte, shape, syn.num_classes, 0.0, 1.0)
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError("stream.data_dir", data_dir, "a folder with the four MNIST-format IDX files")
    xtr, ytr, xte, yte = load_idx_folder(data_dir)
    mean, std = _uint8_stats(xtr)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    return _Base(xtr, ytr, xte, yte, (1, *xtr.shape[1:]), num_classes, mean, std)


class Stream:
    """A sequence of tasks over a base dataset, partitioned over clients.

    Built by :func:`build_stream`; the attributes are read-only by convention.

    Parameters
    ----------
    scenario : str
        ``class_incremental``, ``task_incremental`` or ``domain_permuted``.
    tasks : list[Task]
        The tasks in training order.
    num_clients : int
        Number of logical clients the train split of every task is shared over.
    base : _Base
        The loaded base dataset.
    train_indices, test_indices : list[np.ndarray]
        Per task, indices into the base train / test arrays.
    client_parts : list[list[np.ndarray]]
        Per task, per client, indices into the base train arrays.
    seed : int
        Run seed (fixes the evaluation subsets).
    """

    def __init__(
        self,
        scenario: str,
        tasks: list[Task],
        num_clients: int,
        base: _Base,
        train_indices: list[np.ndarray],
        test_indices: list[np.ndarray],
        client_parts: list[list[np.ndarray]],
        seed: int,
    ) -> None:
        self.scenario = scenario
        self.tasks = tasks
        self.num_clients = num_clients
        self.num_classes = base.num_classes
        self.in_shape = base.in_shape
        self.multi_head = scenario == "task_incremental"
        self.num_heads = len(tasks) if self.multi_head else 1
        self._base = base
        self._train = train_indices
        self._test = test_indices
        self._parts = client_parts
        self._seed = seed
        # materialised slices, per process (fedcl/data/slice_cache.py; budget: backend.data_cache_mb)
        self.cache = SliceCache()
        # stream.blurry settings, blurry classes and per-client proportions (fedcl/data/blurry.py); None = off
        self.blurry: dict[str, Any] | None = None

    def _check_task(self, task_id: int) -> None:
        if not 0 <= task_id < len(self.tasks):
            raise ConfigError("task_id", task_id, f"an integer in [0, {len(self.tasks) - 1}]")

    def task_indices(self, task_id: int, split: str) -> np.ndarray:
        """Indices of a task's samples in the base ``split`` (``"train"`` or ``"test"``) arrays."""
        self._check_task(task_id)
        if split == "train":
            return self._train[task_id]
        if split == "test":
            return self._test[task_id]
        raise ConfigError("split", split, "'train' or 'test'")

    def client_indices(self, task_id: int, client_id: int) -> np.ndarray:
        """This client's share of the task's train data (indices into the base train arrays)."""
        self._check_task(task_id)
        if not 0 <= client_id < self.num_clients:
            raise ConfigError("client_id", client_id, f"an integer in [0, {self.num_clients - 1}]")
        return self._parts[task_id][client_id]

    def _materialise(self, x: np.ndarray, y: np.ndarray, task_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 inputs with the task's permutation, and int64 labels."""
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if xt.dtype == torch.uint8:
            xt = (xt.float() / 255.0 - self._base.mean) / self._base.std
        else:
            xt = xt.float()
        xt = xt.reshape(len(y), -1)
        perm = self.tasks[task_id].permutation
        if perm is not None:
            xt = xt[:, perm]
        return xt.reshape(len(y), *self.in_shape).contiguous(), torch.from_numpy(np.asarray(y, dtype=np.int64))

    def client_labels(self, task_id: int, client_id: int) -> np.ndarray:
        """A client's train labels of a task (no images materialised: plots, checks)."""
        return np.asarray(self._base.y_train[self.client_indices(task_id, client_id)], dtype=np.int64)

    def client_data(self, task_id: int, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A client's train data of a task: x float32 ``[n, *in_shape]`` normalised, y int64 ``[n]``."""
        idx = self.client_indices(task_id, client_id)
        return self.cache.get(("train", task_id, client_id),
                              lambda: self._materialise(self._base.x_train[idx], self._base.y_train[idx], task_id))

    def eval_indices(self, task_id: int, subset_size: int | None = None) -> np.ndarray:
        """Test indices used by :meth:`eval_data`: all, or a fixed seeded subset."""
        idx = self.task_indices(task_id, "test")
        if subset_size is None or subset_size >= len(idx):
            return idx
        if subset_size < 1:
            raise ConfigError("eval.subset_size", subset_size, "null (full test split) or an integer >= 1")
        # seeded by (run seed, task) only: every round, process and client evaluates the same samples
        pick = numpy_rng(self._seed, TAG_EVAL, task_id).choice(len(idx), size=subset_size, replace=False)
        return idx[np.sort(pick)]

    def eval_data(self, task_id: int, subset_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A task's test data (all of it, or the same seeded subset on every call and process)."""
        idx = self.eval_indices(task_id, subset_size)
        return self.cache.get(("test", task_id, subset_size),
                              lambda: self._materialise(self._base.x_test[idx], self._base.y_test[idx], task_id))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for logs: tasks, their classes and per-client sample counts."""
        return {
            "scenario": self.scenario,
            "num_tasks": len(self.tasks),
            "num_classes": self.num_classes,
            "in_shape": list(self.in_shape),
            "multi_head": self.multi_head,
            "num_clients": self.num_clients,
            "tasks": [
                {
                    "task_id": t.task_id,
                    "classes": list(t.classes),
                    "permuted": t.permutation is not None,
                    "train_samples": int(len(self._train[t.task_id])),
                    "test_samples": int(len(self._test[t.task_id])),
                    "client_samples": [int(len(p)) for p in self._parts[t.task_id]],
                }
                for t in self.tasks
            ],
        }


def _class_order(spec: Any, num_classes: int, seed: int) -> list[int]:
    if spec is None:
        return list(range(num_classes))
    if spec == "shuffle":
        return [int(c) for c in numpy_rng(seed, TAG_CLASS_ORDER).permutation(num_classes)]
    if (
        isinstance(spec, (list, tuple))
        and all(isinstance(c, int) and not isinstance(c, bool) for c in spec)
        and sorted(spec) == list(range(num_classes))
    ):
        return [int(c) for c in spec]
    raise ConfigError(
        "stream.class_order", spec, f'null, "shuffle" or a list holding each of 0..{num_classes - 1} once'
    )


def _make_tasks(cfg: StreamConfig, base: _Base, seed: int) -> list[Task]:
    scenario, num_tasks = cfg.scenario, cfg.num_tasks
    if scenario == "domain_permuted":
        classes = list(range(base.num_classes))
        num_pixels = int(np.prod(base.in_shape))
        perms: list[torch.Tensor | None] = [None] + [
            torch.from_numpy(numpy_rng(seed, TAG_PERMUTATION, t).permutation(num_pixels).astype(np.int64))
            for t in range(1, num_tasks)
        ]
        return [Task(t, list(classes), perms[t]) for t in range(num_tasks)]
    if num_tasks > base.num_classes:
        raise ConfigError(
            "stream.num_tasks", num_tasks,
            f"at most {base.num_classes} (the dataset's classes) for {scenario}; every task needs a class",
        )
    order = _class_order(cfg.class_order, base.num_classes, seed)
    return [Task(t, [int(c) for c in chunk]) for t, chunk in enumerate(np.array_split(order, num_tasks))]


def _partition(cfg: StreamConfig, labels: np.ndarray, num_clients: int, seed: int, task_id: int) -> list[np.ndarray]:
    scheme = cfg.partition
    kwargs: dict[str, Any] = {}
    if scheme == "dirichlet":
        kwargs = {"alpha": cfg.alpha, "min_samples": max(cfg.min_samples_per_client, 1)}
    elif scheme == "shards":
        kwargs = {"shards_per_client": cfg.shards_per_client}
    part_seed = seed_int(seed, TAG_PARTITION, task_id)
    return partition_labels(labels, num_clients, scheme, seed=part_seed, **kwargs)


@functools.lru_cache(maxsize=8)
def _build_cached(cfg_json: str, num_clients: int, seed: int) -> Stream:
    cfg = StreamConfig.model_validate_json(cfg_json)
    dataset = cfg.dataset
    synthetic_json = cfg.synthetic.model_dump_json() if cfg.synthetic is not None else "null"
    data_dir = None if dataset == "synthetic" else cfg.data_dir
    base = _load_base(dataset, data_dir, synthetic_json)
    tasks = _make_tasks(cfg, base, seed)
    blurry = check_blurry(cfg.blurry, cfg.scenario) if cfg.blurry else None
    if blurry is not None:  # Si-Blurry: random class counts per task; home classes define each test split
        homes, blurry_cls = blurry_classes([c for t in tasks for c in t.classes], len(tasks), blurry, seed)
        tasks = [Task(t, cls) for t, cls in enumerate(homes)]
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError("federation.num_clients", num_clients, "an integer >= 1")
    train_idx, test_idx, parts = [], [], []
    for task in tasks:
        tr = np.flatnonzero(np.isin(base.y_train, task.classes))
        te = np.flatnonzero(np.isin(base.y_test, task.classes))
        train_idx.append(tr)
        test_idx.append(te)
        parts.append([tr[p] for p in _partition(cfg, base.y_train[tr], num_clients, seed, task.task_id)])
    props = None
    if blurry is not None:  # then part of each client's blurry-class samples leak into other tasks
        props = client_proportions(num_clients, blurry, seed)
        parts = blur_parts(parts, base.y_train, blurry_cls, props, seed)
        train_idx = [np.sort(np.concatenate(row)) for row in parts]
    stream = Stream(cfg.scenario, tasks, num_clients, base, train_idx, test_idx, parts, seed)
    if blurry is not None and props is not None:
        stream.blurry = {**blurry, "blurry_classes": blurry_cls, "client_proportions": props.tolist()}
    return stream


def build_stream(stream_cfg: StreamConfig, num_clients: int, seed: int) -> Stream:
    """Build (or fetch from the per-process cache) the task stream of a run.

    Parameters
    ----------
    stream_cfg : StreamConfig
        The ``stream`` config section (see ``simulations/conf/stream``).
    num_clients : int
        Number of logical clients every task's train split is partitioned over.
    seed : int
        Run seed: class order, permutations, partitions and eval subsets derive from it.

    Returns
    -------
    Stream
        The same object for equal arguments within a process; treat it as read-only.

    Raises
    ------
    ConfigError
        An invalid or impossible stream setting (named by its key), before any training.
    DataError
        Missing or corrupt data files.
    """
    # json of the config is the cache key: equal configs give equal strings
    return _build_cached(stream_cfg.model_dump_json(), num_clients, seed)
