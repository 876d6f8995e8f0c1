"""The base data set under a stream: which reader ``stream.dataset`` names, and how inputs are normalised.

:func:`load_base` is cached per process (every round of every client calls
``build_stream``). Images stay uint8, possibly memory-mapped; normalisation
statistics are per channel, and per source for a data set made of several
(5-Datasets: each source keeps its own mean and std, as in the papers).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcl.data.idx import load_idx_folder
from fedcl.data.images import ImageData
from fedcl.data.synthetic import make_synthetic
from fedcl.errors import ConfigError

IDX_DATASETS = ("fashion_mnist", "mnist_format")
IMAGE_DATASETS = ("cifar10", "cifar100", "five_datasets", "tiny_imagenet", "mini_imagenet", "image_folder", "hf")
DATASETS = (*IDX_DATASETS, "synthetic", *IMAGE_DATASETS)
# stream keys that change the base data (the rest only change tasks, partitions and augmentation)
LOADER_KEYS = ("synthetic", "normalize", "sources", "image_size", "cache_dir", "hf_path", "hf_name",
               "hf_train_split", "hf_test_split", "hf_image_column", "hf_label_column", "hf_cache_dir")


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


def _uint8_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels on the [0, 1] scale, via a histogram (no float copy of the data)."""
    counts = np.bincount(x.ravel(), minlength=256).astype(np.float64)
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


def _stat_pair(spec: Any, key: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(spec, dict) or "mean" not in spec or "std" not in spec:
        raise ConfigError(key, spec, "a mapping {mean: [...], std: [...]} (one value per channel, [0, 1] scale)")
    mean, std = (np.asarray(spec[k], dtype=np.float64).reshape(-1) for k in ("mean", "std"))
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise ConfigError(f"{key}.{name}", spec[name], f"1 or {channels} values (the images have {channels} "
                              "channels)")
    if (std <= 0).any():
        raise ConfigError(f"{key}.std", spec["std"], "values > 0")
    return np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy()


def _normalisation(data: ImageData, spec: Any, sources: tuple[str, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """``S x C`` mean and std: from ``stream.normalize`` or, where null, measured on the train split."""
    channels = data.x_train.shape[1]
    if sources is None:
        if spec is None:
            m, s = channel_stats(data.x_train)
        else:
            m, s = _stat_pair(spec, "stream.normalize", channels)
        return m[None], s[None]
    if spec is not None and (not isinstance(spec, dict) or set(spec) - set(sources)):
        raise ConfigError("stream.normalize", spec, f"null or a mapping from source ({list(sources)}) to "
                          "{mean: [...], std: [...]}")
    means, stds = [], []
    src = data.extra["source_train"]
    for k, name in enumerate(sources):
        if spec is not None and spec.get(name) is not None:
            m, sd = _stat_pair(spec[name], f"stream.normalize.{name}", channels)
        else:
            idx = np.flatnonzero(src == k)  # sources are stored one after another: a contiguous range
            m, sd = channel_stats(data.x_train[idx.min() : idx.max() + 1] if len(idx) else data.x_train[:0])
        means.append(m)
        stds.append(sd)
    return np.stack(means), np.stack(stds)


def _read(dataset: str, data_dir: str | None, opts: dict[str, Any]) -> ImageData:
    size = opts.get("image_size")
    hw = (int(size[0]), int(size[1])) if size else None
    cache_dir = opts.get("cache_dir")
    if dataset != "hf" and (not isinstance(data_dir, str) or not data_dir):
        raise ConfigError("stream.data_dir", data_dir,
                          f"the folder holding {dataset} (see README: Standard benchmarks)")
    assert dataset == "hf" or data_dir is not None
    if dataset in ("cifar10", "cifar100"):
        from fedcl.data.cifar import read_cifar

        return read_cifar(data_dir, dataset)  # type: ignore[arg-type]
    if dataset == "five_datasets":
        from fedcl.data.five_datasets import read_five_datasets

        return read_five_datasets(data_dir, opts.get("sources"), cache_dir=cache_dir)
    if dataset == "tiny_imagenet":
        from fedcl.data.tiny_imagenet import read_tiny_imagenet

        return read_tiny_imagenet(data_dir, cache_dir=cache_dir)  # type: ignore[arg-type]
    if dataset == "mini_imagenet":
        from fedcl.data.mini_imagenet import read_mini_imagenet

        return read_mini_imagenet(data_dir, cache_dir=cache_dir)  # type: ignore[arg-type]
    if dataset == "image_folder":
        from fedcl.data.imagefolder import read_image_folder

        return read_image_folder(data_dir, size=hw, cache_dir=cache_dir)  # type: ignore[arg-type]
    from fedcl.data.hf import read_hf

    if not opts.get("hf_path"):
        raise ConfigError("stream.hf_path", opts.get("hf_path"), "a Hugging Face hub name (cached locally) or a "
                          "folder written by save_to_disk")
    return read_hf(
        str(opts["hf_path"]), name=opts.get("hf_name"), train_split=opts.get("hf_train_split") or "train",
        test_split=opts.get("hf_test_split") or "test", image_column=opts.get("hf_image_column"),
        label_column=opts.get("hf_label_column"), hf_cache_dir=opts.get("hf_cache_dir"), size=hw,
        cache_dir=cache_dir,
    )


@functools.lru_cache(maxsize=4)
def _load_base_cached(dataset: str, data_dir: str | None, opts_json: str) -> _Base:
    opts = json.loads(opts_json)
    if dataset == "synthetic":
        syn = opts.get("synthetic")
        if not isinstance(syn, dict):
            raise ConfigError("stream.synthetic", syn, "a mapping with num_classes, image_shape, ...")
        try:
            shape = tuple(int(s) for s in syn["image_shape"])
            xtr, ytr, xte, yte = make_synthetic(
                int(syn["num_classes"]), shape, int(syn["train_per_class"]), int(syn["test_per_class"]),
                float(syn["noise"]), int(syn.get("seed", 0)),
            )
        except KeyError as exc:
            raise ConfigError(
                f"stream.synthetic.{exc.args[0]}", None, "required; see simulations/conf/stream/synthetic.yaml"
            ) from exc
        return _Base(xtr, ytr, xte, yte, shape, int(syn["num_classes"]), np.zeros((1, 1)), np.ones((1, 1)))
    if dataset in IDX_DATASETS:
        if not isinstance(data_dir, str) or not data_dir:
            raise ConfigError("stream.data_dir", data_dir, "a folder with the four MNIST-format IDX files")
        xtr, ytr, xte, yte = load_idx_folder(data_dir)
        if opts.get("normalize") is None:
            g_mean, g_std = _uint8_stats(xtr)  # one statistic over all pixels, as before per-channel statistics
            m, s = np.array([[g_mean]]), np.array([[g_std]])
        else:
            m1, s1 = _stat_pair(opts["normalize"], "stream.normalize", 1)
            m, s = m1[None], s1[None]
        num_classes = int(max(ytr.max(), yte.max())) + 1
        return _Base(xtr, ytr, xte, yte, (1, *xtr.shape[1:]), num_classes, m, s)
    data = _read(dataset, data_dir, opts)
    x_train = data.x_train if data.x_train.ndim == 4 else data.x_train[:, None]
    x_test = data.x_test if data.x_test.ndim == 4 else data.x_test[:, None]
    data = ImageData(x_train, data.y_train, x_test, data.y_test, data.class_names, data.files, data.notes, data.extra)
    sources: tuple[str, ...] | None = None
    class_source = None
    if dataset == "five_datasets":
        from fedcl.data.five_datasets import CLASSES_PER_SOURCE, SOURCES

        sources = SOURCES
        class_source = np.arange(len(SOURCES) * CLASSES_PER_SOURCE) // CLASSES_PER_SOURCE
    mean, std = _normalisation(data, opts.get("normalize"), sources)
    return _Base(x_train, data.y_train, x_test, data.y_test, tuple(x_train.shape[1:]), data.num_classes,
                 mean, std, class_source, data.class_names, data)


def load_base(cfg: dict[str, Any]) -> _Base:
    """The base data set of a stream config (cached per process on the keys that shape it)."""
    dataset = cfg["dataset"]
    if dataset not in DATASETS:
        raise ConfigError("stream.dataset", dataset, f"one of {list(DATASETS)}")
    if dataset == "synthetic" and not isinstance(cfg.get("synthetic"), dict):
        raise ConfigError(
            "stream.synthetic", cfg.get("synthetic"), "a mapping; see simulations/conf/stream/synthetic.yaml"
        )
    opts = {k: cfg.get(k) for k in LOADER_KEYS if cfg.get(k) is not None}
    if dataset != "synthetic":
        opts.pop("synthetic", None)
    data_dir = None if dataset == "synthetic" else cfg.get("data_dir")
    return _load_base_cached(dataset, data_dir, json.dumps(opts, sort_keys=True, default=str))
