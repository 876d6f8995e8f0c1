"""5-Datasets: CIFAR-10, MNIST, SVHN, Fashion-MNIST and notMNIST as one 50-class data set, one task each.

As in GPM's and FOT's ``five_datasets.py`` (after HAT's ``mixture.py``) and
ACL's ``mulitidatasets.py``: every image becomes ``3 x 32 x 32`` uint8 (MNIST and
Fashion-MNIST zero-padded by 2 pixels, grey images repeated over three
channels) and the task order is GPM's / FOT's ``idata = 0..4``: CIFAR-10, MNIST,
SVHN, Fashion-MNIST, notMNIST. Source ``s``'s label ``k`` becomes class
``10 s + k``, so ``num_tasks: 5`` with the default class order gives one task per
source; each source keeps its own normalisation (``stream.normalize``).

The assembled arrays (~260,000 train images, ~800 MB) are cached memory-mapped
(:mod:`fedcl.data.cache`) so the processes of a run share one copy.

Where each source is read from (``stream.sources.<name>.data_dir`` overrides, else under
``stream.data_dir``): ``cifar10``: ``cifar-10-batches-py/`` or
``cifar-10-python.tar.gz``; ``mnist``: IDX files in ``mnist/`` (or torchvision's
``MNIST/raw/``); ``svhn``: ``train_32x32.mat`` and ``test_32x32.mat`` in ``svhn/``;
``fashion_mnist``: IDX files in ``fashion_mnist/`` (or ``FashionMNIST/raw/``);
``notmnist``: ``notmnist_train.pkl`` / ``notmnist_test.pkl`` in ``notmnist/``
or ACL's ``notMNIST/Train|Test/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.data import cifar, notmnist, svhn
from fedcl.data.cache import build_cached, cache_root, cached_meta, fingerprint
from fedcl.data.idx import _ROLES, _find, load_idx_folder
from fedcl.data.imagefolder import image_files
from fedcl.data.images import ImageData, to_rgb_chw
from fedcl.errors import DataError

SOURCES = ("cifar10", "mnist", "svhn", "fashion_mnist", "notmnist")
CLASSES_PER_SOURCE = 10
SIZE = 32
_IDX_DIRS = {"mnist": ("mnist", "MNIST/raw", "MNIST"),
             "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST")}
READER_VERSION = 1


def _idx_dir(name: str, path: Path, explicit: bool) -> Path:
    candidates = [path] if explicit else [path / d for d in _IDX_DIRS[name]]
    for c in candidates:
        if c.is_dir() and _find(c, _ROLES["train images"]) is not None:
            return c
    raise DataError(f"no {name} IDX files (train-images-idx3-ubyte[.gz], ...) in "
                    f"{' or '.join(str(c) for c in candidates)}; set stream.sources.{name}.data_dir to their folder")


def source_paths(data_dir: str | Path | None, sources: dict[str, Any] | None) -> dict[str, Path]:
    """Where each source is read from: ``sources[name]`` if set, else found under ``data_dir``."""
    sources = dict(sources or {})
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise DataError(f"stream.sources has unknown names {unknown}; the five are {list(SOURCES)}")
    out: dict[str, Path] = {}
    for name in SOURCES:
        explicit = sources.get(name)
        if not explicit and not data_dir:
            raise DataError(f"5-Datasets: no folder for {name}: set stream.data_dir or stream.sources.{name}.data_dir")
        base = Path(explicit or data_dir)  # type: ignore[arg-type]
        if name in _IDX_DIRS:
            out[name] = _idx_dir(name, base, bool(explicit))
        elif name == "cifar10":
            out[name] = cifar.locate(base, cifar.CIFAR10)
        elif name == "svhn":
            out[name] = svhn.locate(base)
        else:
            out[name] = notmnist.locate(base)[1]
    return out


def _files(name: str, path: Path) -> list[Path]:
    """The files a source's reader reads (for the cache key)."""
    if path.is_file():
        return [path]
    if name in _IDX_DIRS:
        return [p for stems in _ROLES.values() if (p := _find(path, stems)) is not None]
    if name == "cifar10":
        return [path / n for n in (*cifar.CIFAR10.train, cifar.CIFAR10.test, cifar.CIFAR10.meta)]
    if name == "svhn":
        return [path / f for f in svhn.FILES.values()]
    pickles = [path / p for p in notmnist.PICKLES.values() if (path / p).is_file()]
    return pickles or image_files(path)


def _read_source(name: str, path: Path, cache_dir: str | Path | None) -> ImageData:
    if name in _IDX_DIRS:
        xtr, ytr, xte, yte = load_idx_folder(path)
        return ImageData(xtr, ytr, xte, yte, files=[path])
    if name == "cifar10":
        return cifar.read_cifar(path, "cifar10")
    if name == "svhn":
        return svhn.read_svhn(path)
    return notmnist.read_notmnist(path, cache_dir=cache_dir)


def _assemble(
    parts: dict[str, ImageData], split: str, alloc: Callable[[str, tuple[int, ...], np.dtype], np.ndarray]
) -> dict[str, np.ndarray]:
    """One split of the five sources in task order: images, labels ``10 * source + label``, source indices."""
    total = sum(len(getattr(parts[n], f"y_{split}")) for n in SOURCES)
    x = alloc(f"x_{split}", (total, 3, SIZE, SIZE), np.dtype(np.uint8))
    y = np.empty(total, np.int64)
    src = np.empty(total, np.int64)
    start = 0
    for s, name in enumerate(SOURCES):
        xs, ys = getattr(parts[name], f"x_{split}"), getattr(parts[name], f"y_{split}")
        for i in range(0, len(ys), 8192):  # chunks: grey sources become 3 channels piecewise
            x[start + i : start + i + len(ys[i : i + 8192])] = to_rgb_chw(np.asarray(xs[i : i + 8192]), SIZE)
        y[start : start + len(ys)] = CLASSES_PER_SOURCE * s + ys
        src[start : start + len(ys)] = s
        start += len(ys)
    return {f"x_{split}": x, f"y_{split}": y, f"source_{split}": src}


def read_five_datasets(
    data_dir: str | Path | None, sources: dict[str, Any] | None = None, *, cache_dir: str | Path | None = None
) -> ImageData:
    """Read and assemble the five sources: uint8 ``N x 3 x 32 x 32``, labels ``10 * source + label``.

    Parameters
    ----------
    data_dir : str | Path | None
        Folder holding the five sources (see the module docstring for the layout).
    sources : dict | None
        Per-source folders overriding ``data_dir`` (``{"fashion_mnist": "/usr/share/datasets/fashion-mnist"}``).
    cache_dir : str | Path | None, default None
        Where the assembled arrays are cached (default: under ``data_dir``, else ``~/.cache/fedcl``).

    Returns
    -------
    ImageData
        ``class_names`` are ``"<source>:<name>"``; ``extra["source_train"]`` /
        ``extra["source_test"]`` give each sample's source index (position in
        :data:`SOURCES`).
    """
    paths = source_paths(data_dir, sources)
    anchor = Path(data_dir) if data_dir else paths[SOURCES[0]].parent
    files = [f for name in SOURCES for f in _files(name, paths[name])]
    fp = fingerprint(files, Path("/"), reader="five_datasets", version=READER_VERSION,
                     paths={k: str(v) for k, v in paths.items()})
    folder = cache_root(anchor, cache_dir) / f"five_datasets-{fp}"

    def build(alloc: Callable[[str, tuple[int, ...], np.dtype], np.ndarray]) -> dict[str, Any]:
        parts = {name: _read_source(name, paths[name], cache_dir) for name in SOURCES}
        names: list[str] = []
        for name in SOURCES:
            data = parts[name]
            if data.num_classes > CLASSES_PER_SOURCE:
                raise DataError(f"5-Datasets: {name} at {paths[name]} has {data.num_classes} classes, expected 10")
            own = data.class_names or [str(k) for k in range(CLASSES_PER_SOURCE)]
            names += [f"{name}:{own[k] if k < len(own) else k}" for k in range(CLASSES_PER_SOURCE)]
        out: dict[str, Any] = {"meta": {"class_names": names,
                                        "counts": {n: [len(parts[n].y_train), len(parts[n].y_test)] for n in SOURCES}}}
        for split in ("train", "test"):
            out.update(_assemble(parts, split, alloc))
        return out

    arrays = build_cached(folder, build)
    meta = cached_meta(folder)
    counts = ", ".join(f"{n} {c[0]}/{c[1]}" for n, c in meta["counts"].items())
    return ImageData(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        class_names=list(meta["class_names"]), files=[paths[n] for n in SOURCES],
        notes=[f"train/test images per source: {counts}", f"assembled arrays cached in {folder}"],
        extra={"source_train": arrays["source_train"], "source_test": arrays["source_test"]},
    ).validate("5-Datasets")
