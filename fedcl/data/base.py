"""The base data set under a stream: which reader ``stream.dataset`` names, and how inputs are normalised.

:func:`load_base` is cached per process (every round of every client calls
``build_stream``). Images stay uint8, possibly memory-mapped; normalisation
statistics are per channel, and per source for a data set made of several
(5-Datasets: each source keeps its own mean and std, as in the papers).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedcl.config.schema import FIVE_SOURCES, IDX_DATASETS, Normalize, Synthetic
from fedcl.config.schema import Stream as StreamConfig
from fedcl.data.idx import load_idx_folder
from fedcl.data.images import ImageData
from fedcl.data.synthetic import make_synthetic
from fedcl.errors import ConfigError

# stream keys that change the base data (the rest only change tasks, partitions and augmentation)
LOADER_KEYS = ("dataset", "data_dir", "synthetic", "normalize", "sources", "image_size", "cache_dir", "hf_path",
               "hf_name", "hf_train_split", "hf_test_split", "hf_image_column", "hf_label_column", "hf_cache_dir")


@dataclass(frozen=True)
class _Base:
    """A loaded base dataset and how to normalise it.

    ``mean`` / ``std`` are ``S x C`` (sources x channels) on the [0, 1] scale of
    uint8 images (0 / 1 for float data); ``class_source[k]`` is the source of
    class ``k`` (None: one source).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    in_shape: tuple[int, ...]
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    class_source: np.ndarray | None = None
    class_names: list[str] | None = None
    data: ImageData | None = field(default=None, compare=False)  # what the reader found (data check)


_STATS_CHUNK = 1 << 20  # pixels per bincount: its int64 copy stays in cache (4x less CPU than one 47M-pixel pass)


def _uint8_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels on the [0, 1] scale, via a histogram (no float copy of the data).

    Exact (integer counts), so the same normalisation whatever the chunking; every process
    that loads the data (launcher, server, each Ray actor) pays it before round 1.
    """
    flat = x.reshape(-1)
    counts_int = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, _STATS_CHUNK):
        counts_int += np.bincount(flat[start : start + _STATS_CHUNK], minlength=256)
    counts = counts_int.astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    var = float((counts * (values - mean) ** 2).sum() / counts.sum())
    return mean, max(var, 1e-12) ** 0.5


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 ``N x C x H x W`` images on the [0, 1] scale, chunk by chunk."""
    channels = x.shape[1]
    counts = np.zeros((channels, 256), np.float64)
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start : start + chunk])
        for c in range(channels):
            counts[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256) / 255.0
    total = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / total
    var = (counts * (values[None] - mean[:, None]) ** 2).sum(axis=1) / total
    return mean, np.sqrt(np.maximum(var, 1e-12))


def _stat_pair(spec: Normalize, key: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A configured ``{mean, std}`` as two length-``channels`` arrays (one value stands for every channel)."""
    mean, std = np.asarray(spec.mean, dtype=np.float64), np.asarray(spec.std, dtype=np.float64)
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise ConfigError(f"{key}.{name}", list(v), f"1 or {channels} values (the images have {channels} "
                              "channels)")
    return np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy()


def _normalisation(data: ImageData, cfg: StreamConfig) -> tuple[np.ndarray, np.ndarray]:
    """``S x C`` mean and std: configured, or (where null) measured on the train split (per 5-Datasets source)."""
    channels = data.x_train.shape[1]
    if cfg.dataset != "five_datasets":
        if cfg.normalize is None:
            m, s = channel_stats(data.x_train)
        else:
            m, s = _stat_pair(cfg.normalize, "stream.normalize", channels)
        return m[None], s[None]
    means, stds = [], []
    src = data.extra["source_train"]
    for k, name in enumerate(FIVE_SOURCES):
        spec = getattr(cfg.sources, name).normalize if cfg.sources is not None else None
        if spec is not None:
            m, sd = _stat_pair(spec, f"stream.sources.{name}.normalize", channels)
        else:
            idx = np.flatnonzero(src == k)  # sources are stored one after another: a contiguous range
            m, sd = channel_stats(data.x_train[idx.min() : idx.max() + 1] if len(idx) else data.x_train[:0])
        means.append(m)
        stds.append(sd)
    return np.stack(means), np.stack(stds)


def _read(cfg: StreamConfig) -> ImageData:
    """The image reader of ``stream.dataset`` (imported on use: the hf extra may be absent)."""
    dataset, data_dir, cache_dir = cfg.dataset, cfg.data_dir, cfg.cache_dir
    hw = (cfg.image_size[0], cfg.image_size[1]) if cfg.image_size else None
    if dataset in ("cifar10", "cifar100"):
        from fedcl.data.cifar import read_cifar

        return read_cifar(str(data_dir), dataset)
    if dataset == "five_datasets":
        from fedcl.data.five_datasets import read_five_datasets

        dirs = {k: getattr(cfg.sources, k).data_dir for k in FIVE_SOURCES} if cfg.sources is not None else None
        return read_five_datasets(data_dir, dirs, cache_dir=cache_dir)
    if dataset == "tiny_imagenet":
        from fedcl.data.tiny_imagenet import read_tiny_imagenet

        return read_tiny_imagenet(str(data_dir), cache_dir=cache_dir)
    if dataset == "mini_imagenet":
        from fedcl.data.mini_imagenet import read_mini_imagenet

        return read_mini_imagenet(str(data_dir), cache_dir=cache_dir)
    if dataset == "image_folder":
        from fedcl.data.imagefolder import read_image_folder

        return read_image_folder(str(data_dir), size=hw, cache_dir=cache_dir)
    from fedcl.data.hf import read_hf

    return read_hf(
        str(cfg.hf_path), name=cfg.hf_name, train_split=cfg.hf_train_split, test_split=cfg.hf_test_split,
        image_column=cfg.hf_image_column, label_column=cfg.hf_label_column, hf_cache_dir=cfg.hf_cache_dir,
        size=hw, cache_dir=cache_dir,
    )


def _synthetic_base(syn: Synthetic) -> _Base:
    shape = tuple(syn.image_shape)
    xtr, ytr, xte, yte = make_synthetic(syn.num_classes, shape, syn.train_per_class, syn.test_per_class,
                                        syn.noise, syn.seed)
    return _Base(xtr, ytr, xte, yte, shape, syn.num_classes, np.zeros((1, 1)), np.ones((1, 1)))


def _idx_base(data_dir: str, normalize: Normalize | None) -> _Base:
    xtr, ytr, xte, yte = load_idx_folder(data_dir)
    if normalize is None:
        g_mean, g_std = _uint8_stats(xtr)  # one statistic over all pixels (grey images: their one channel)
        m, s = np.array([[g_mean]]), np.array([[g_std]])
    else:
        m1, s1 = _stat_pair(normalize, "stream.normalize", 1)
        m, s = m1[None], s1[None]
    num_classes = int(max(ytr.max(), yte.max())) + 1
    return _Base(xtr, ytr, xte, yte, (1, *xtr.shape[1:]), num_classes, m, s)


@functools.lru_cache(maxsize=4)
def _load_base_cached(loader_json: str) -> _Base:
    cfg = StreamConfig.model_validate_json(loader_json)
    if cfg.dataset == "synthetic":
        assert cfg.synthetic is not None  # the schema requires the block
        return _synthetic_base(cfg.synthetic)
    assert cfg.data_dir is not None or cfg.dataset == "hf"  # the schema requires it
    if cfg.dataset in IDX_DATASETS:
        return _idx_base(str(cfg.data_dir), cfg.normalize)
    data = _read(cfg)
    x_train = data.x_train if data.x_train.ndim == 4 else data.x_train[:, None]
    x_test = data.x_test if data.x_test.ndim == 4 else data.x_test[:, None]
    data = ImageData(x_train, data.y_train, x_test, data.y_test, data.class_names, data.files, data.notes, data.extra)
    class_source = None
    if cfg.dataset == "five_datasets":
        from fedcl.data.five_datasets import CLASSES_PER_SOURCE

        class_source = np.arange(len(FIVE_SOURCES) * CLASSES_PER_SOURCE) // CLASSES_PER_SOURCE
    mean, std = _normalisation(data, cfg)
    return _Base(x_train, data.y_train, x_test, data.y_test, tuple(x_train.shape[1:]), data.num_classes,
                 mean, std, class_source, data.class_names, data)


def load_base(cfg: StreamConfig) -> _Base:
    """The base data set of a stream config (cached per process on the keys that shape it)."""
    # the keys that do not shape the data keep their values from a neutral stream, so that e.g. a change of
    # partition or num_tasks reuses the loaded arrays
    loader = cfg.model_copy(update={k: v for k, v in _NEUTRAL.items() if k not in LOADER_KEYS})
    return _load_base_cached(loader.model_dump_json())


_NEUTRAL = {"scenario": "class_incremental", "num_tasks": 1, "class_order": None, "partition": "iid", "alpha": 1.0,
            "shards_per_client": 1, "min_samples_per_client": 0, "blurry": None, "flwr_partitioner": None,
            "augment": None}
