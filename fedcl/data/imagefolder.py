"""Image-folder trees (``train/<class>/*.png|jpg``, ``val/<class>/...``), decoded once with Pillow.

The layout of torchvision's ``ImageFolder``: one sub-folder per class (sorted
names give the labels; images may sit deeper, as in Tiny-ImageNet's
``train/<wnid>/images/``), a ``train`` split and a ``val`` or ``test`` split with
the same class folders. Decoding happens once; the arrays are cached next to the
data under a hash of the file list (:mod:`fedcl.data.cache`), so every later load
and every other process maps them in milliseconds. Other readers with their own
label files (Tiny-ImageNet's ``val_annotations.txt``, notMNIST's letter folders)
reuse :func:`decode_splits`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fedcl.data.cache import build_cached, cache_root, cached_meta, fingerprint
from fedcl.data.images import ImageData
from fedcl.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
READER_VERSION = 1  # bump when decoding changes: old caches then no longer match


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (any depth, hidden folders skipped), sorted; suffixes case-insensitive."""
    found: list[str] = []
    # os.walk on strings: pathlib's rglob costs ~40 us a file, which every process would pay on 100,000 files
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, n) for n in filenames if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    return [Path(p) for p in sorted(found)]


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class sub-folders (hidden folders, e.g. the cache, excluded)."""
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _decode_one(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}: {exc}); the file is truncated or "
                        "not an image: replace or delete it") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _first_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot decode image {path} ({exc}); replace or delete it") from exc


def _decode_files(
    x: np.ndarray, files: list[Path], size: tuple[int, int] | None, mode: str, skip_broken: bool
) -> np.ndarray:
    """Decode ``files`` into ``x`` (``N x C x H x W``); per file, whether it decoded (False only when skipping)."""
    hw = x.shape[2:]

    def fill(i: int) -> bool:
        try:
            arr = _decode_one(files[i], size, mode)
        except DataError:
            if skip_broken:
                return False
            raise
        if arr.shape[1:] != hw:
            raise DataError(f"{files[i]} is {arr.shape[1]} x {arr.shape[2]} but {files[0]} is "
                            f"{hw[0]} x {hw[1]}; set stream.image_size: [H, W] to resize them all")
        x[i] = arr
        return True

    # Pillow releases the GIL while decoding: threads use every core
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return np.fromiter(pool.map(fill, range(len(files))), dtype=bool, count=len(files))


def _build(
    root: Path, splits: dict[str, tuple[list[Path], list[int]]], class_names: list[str], size: tuple[int, int] | None,
    channels: int, skip_broken: bool, alloc: Callable[[str, tuple[int, ...], np.dtype], np.ndarray],
) -> dict[str, object]:
    """Decode both splits into arrays from ``alloc`` (the cache's memory maps; in memory when skipping)."""
    mode = "RGB" if channels == 3 else "L"
    hw = size or _first_size(splits["train"][0][0])
    skipped: list[str] = []
    out: dict[str, object] = {"meta": {"class_names": class_names, "skipped": skipped}}
    for split, (files, labels) in splits.items():
        shape = (len(files), channels, hw[0], hw[1])
        x = np.empty(shape, np.uint8) if skip_broken else alloc(f"x_{split}", shape, np.dtype(np.uint8))
        ok = _decode_files(x, files, size, mode, skip_broken)
        skipped += [str(f.relative_to(root)) for f, good in zip(files, ok, strict=True) if not good]
        out[f"x_{split}"] = x if ok.all() else x[ok]
        out[f"y_{split}"] = np.asarray(labels, dtype=np.int64)[ok]
    return out


def decode_splits(
    root: Path,
    name: str,
    splits: dict[str, tuple[list[Path], list[int]]],
    class_names: list[str],
    *,
    size: tuple[int, int] | None = None,
    channels: int = 3,
    cache_dir: str | Path | None = None,
    options: dict[str, object] | None = None,
    skip_broken: bool = False,
) -> ImageData:
    """Decode the ``train`` and ``test`` file lists once into a memory-mapped cache.

    Parameters
    ----------
    root : Path
        The data folder (file paths are hashed relative to it).
    name : str
        Cache folder prefix, e.g. ``"tiny_imagenet"``.
    splits : dict
        ``{"train": (files, labels), "test": (files, labels)}``.
    class_names : list[str]
        Label ``k`` is ``class_names[k]``.
    size : tuple[int, int] | None, default None
        ``(height, width)`` to resize every image to (bilinear); None: all must have the first image's size.
    channels : int, default 3
        3 (RGB) or 1 (grey); images of other modes are converted.
    cache_dir : str | Path | None, default None
        Where the cache goes (default: ``<root>/.fedcl_cache`` if writable, else ``~/.cache/fedcl``).
    options : dict | None
        Further reader settings that change the arrays (part of the cache key).
    skip_broken : bool, default False
        Leave out (and list in ``notes``) images that do not decode instead of raising, as ACL's
        notMNIST loader does; decodes in memory, so only for small data sets.

    Returns
    -------
    ImageData
        Memory-mapped uint8 ``N x C x H x W`` images, int64 labels.
    """
    if channels not in (1, 3):
        raise DataError(f"{root}: channels must be 1 or 3, got {channels}")
    for split in ("train", "test"):
        if not splits[split][0]:
            raise DataError(f"no {split} images found under {root} (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    fp = fingerprint([f for files, _ in splits.values() for f in files], root, reader=name, version=READER_VERSION,
                     size=size, channels=channels, classes=class_names,
                     labels=[list(map(int, lab)) for _, lab in splits.values()], skip_broken=skip_broken,
                     **(options or {}))
    folder = cache_root(root, cache_dir) / f"{name}-{fp}"
    arrays = build_cached(folder, functools.partial(_build, root, splits, class_names, size, channels, skip_broken))
    meta = cached_meta(folder)
    notes = [f"decoded images cached in {folder}"]
    if meta.get("skipped"):
        notes.append(f"left out {len(meta['skipped'])} images that do not decode: {meta['skipped'][:5]}")
    return ImageData(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        class_names=list(meta["class_names"]), files=[root], notes=notes,
    ).validate(str(root))


def read_image_folder(
    root: str | Path,
    *,
    size: tuple[int, int] | None = None,
    channels: int = 3,
    cache_dir: str | Path | None = None,
    test_split: tuple[str, ...] = ("val", "test"),
) -> ImageData:
    """Read ``root/train/<class>/**/*.png|jpg`` and ``root/val`` (or ``root/test``) alike.

    Labels are the sorted class-folder names of ``train`` (torchvision's
    ``ImageFolder`` order); the test split must use the same names.

    Raises
    ------
    DataError
        A missing split folder, a test class unknown to train, an image that
        does not decode, or images of different sizes without ``size``.
    """
    root = Path(root)
    train_dir = root / "train"
    test_dir = next((root / s for s in test_split if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"image folder {root} needs train/<class>/ and one of "
                        f"{', '.join(s + '/<class>/' for s in test_split)} sub-folders")
    classes = class_folders(train_dir)
    if not classes:
        raise DataError(f"{train_dir} has no class sub-folders; expected train/<class>/<images>")
    unknown = sorted(set(class_folders(test_dir)) - set(classes))
    if unknown:
        raise DataError(f"{test_dir} has classes {unknown[:5]} that {train_dir} lacks")
    splits: dict[str, tuple[list[Path], list[int]]] = {}
    for split, folder in (("train", train_dir), ("test", test_dir)):
        files: list[Path] = []
        labels: list[int] = []
        for k, cls in enumerate(classes):
            if (folder / cls).is_dir():
                found = image_files(folder / cls)
                files += found
                labels += [k] * len(found)
        splits[split] = (files, labels)
    return decode_splits(root, "imagefolder", splits, classes, size=size, channels=channels, cache_dir=cache_dir)
