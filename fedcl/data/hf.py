"""Any Hugging Face ``datasets`` image classification data set, read offline (``stream.dataset: hf``).

``stream.hf_path`` is either a folder written by ``DatasetDict.save_to_disk``
or a hub name (``uoft-cs/cifar100``) already in the local ``datasets`` cache:
nothing is downloaded at run time (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
are set unless the environment sets them). The image column is the first
``Image`` feature (or ``stream.hf_image_column``), the label column the first
``ClassLabel`` (or ``stream.hf_label_column``), whose names become the class
names. Images are decoded once with Pillow and cached memory-mapped like the
image folders, keyed by the data set's Arrow files. Needs ``pip install 'fedcl[hf]'``.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.data.cache import build_cached, cache_root, cached_meta, fingerprint
from fedcl.data.images import ImageData
from fedcl.errors import DataError

READER_VERSION = 1


def _datasets() -> Any:
    # offline unless the user says otherwise; also when `datasets` was imported before us
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError as exc:
        raise DataError("stream.dataset=hf needs the Hugging Face datasets library: pip install 'fedcl[hf]'") from exc
    if os.environ["HF_DATASETS_OFFLINE"].upper() in ("1", "ON", "YES", "TRUE"):
        datasets.config.HF_HUB_OFFLINE = True
    return datasets


def _open(path: str, name: str | None, hf_cache_dir: str | None) -> Any:
    datasets = _datasets()
    local = Path(path).expanduser()
    if local.exists():
        try:
            return datasets.load_from_disk(str(local))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(f"{local} is not a folder written by save_to_disk ({exc})") from exc
    try:
        return datasets.load_dataset(path, name, cache_dir=hf_cache_dir)
    except Exception as exc:  # offline misses surface as ConnectionError, FileNotFoundError, ValueError, ...
        raise DataError(
            f"Hugging Face data set {path!r}{f' ({name})' if name else ''} is not in the local cache "
            f"({hf_cache_dir or 'the default ~/.cache/huggingface/datasets'}) and nothing is downloaded at run "
            f"time ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). On a machine with "
            f"network run datasets.load_dataset({path!r}).save_to_disk('<folder>') and set stream.hf_path=<folder>"
        ) from exc


def _column(features: Any, wanted: str | None, kind: type, role: str, where: str) -> str:
    if wanted is not None:
        if wanted not in features:
            raise DataError(f"{where} has no column {wanted!r} (stream.hf_{role}_column); columns: {list(features)}")
        return wanted
    for col, feat in features.items():
        if isinstance(feat, kind):
            return str(col)
    fallback = {"label": ("label", "labels", "fine_label")}.get(role, ())
    for col in fallback:
        if col in features:
            return col
    raise DataError(f"{where} has no {kind.__name__} column; set stream.hf_{role}_column (columns: {list(features)})")


_GREY_MODES = ("1", "L", "I", "I;16", "F")


def _open_image(value: dict[str, Any]) -> Any:
    """A PIL image from an undecoded ``Image`` value: ``{"bytes": ..., "path": ...}``."""
    from PIL import Image

    return Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"])


def _mode_of(value: Any) -> str:
    """Grey images stay one channel ("L"); everything else becomes RGB."""
    if not isinstance(value, dict):
        return "RGB"  # array features keep their own channels
    with _open_image(value) as im:
        return "L" if im.mode in _GREY_MODES else "RGB"


def _decode(value: Any, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    from PIL import Image

    if isinstance(value, dict):  # Image(decode=False)
        with _open_image(value) as opened:
            im = opened.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    else:  # an array feature: H x W or H x W x C
        arr = np.asarray(value)
        if arr.dtype != np.uint8:
            raise DataError(f"image arrays must be uint8, got {arr.dtype}")
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _open_splits(path: str, name: str | None, hf_cache_dir: str | None, train_split: str, test_split: str) -> Any:
    """The ``DatasetDict`` at ``path``, which must hold both splits."""
    dd = _open(path, name, hf_cache_dir)
    if not isinstance(dd, _datasets().DatasetDict):
        raise DataError(f"{path} holds one split; save a DatasetDict with {train_split!r} and {test_split!r} splits")
    for split in (train_split, test_split):
        if split not in dd:
            raise DataError(f"{path} has splits {list(dd)}, not {split!r} (set stream.hf_train_split / hf_test_split)")
    return dd


def _decode_into(
    x: np.ndarray, ds: Any, img_col: str, size: tuple[int, int] | None, mode: str, where: str, first: str
) -> None:
    """Decode every row's image of ``ds`` into ``x`` (whose shape the first train image fixed)."""
    for i, row in enumerate(ds):
        try:
            arr = _decode(row[img_col], size, mode)
        except (OSError, ValueError) as exc:
            raise DataError(f"{where} row {i}: the image does not decode ({exc})") from exc
        if arr.shape != x.shape[1:]:
            raise DataError(f"{where} row {i} is {arr.shape}, {first} {x.shape[1:]}; "
                            "set stream.image_size: [H, W] to resize them all")
        x[i] = arr


def _cache_folder(path: str, name: str | None, files: list[Path], parts: dict[str, Any], splits: dict[str, str],
                  columns: list[str], size: tuple[int, int] | None, cache_dir: str | Path | None) -> Path:
    """Where the decoded arrays go: keyed by the data set's files, splits, columns and size."""
    exists = Path(path).expanduser().exists()
    fp = fingerprint(files, Path("/"), reader="hf", version=READER_VERSION, path=path, name=name,
                     splits=[splits["train"], splits["test"]], columns=columns, size=size,
                     fingerprints=[getattr(ds, "_fingerprint", None) for ds in parts.values()])
    default_cache = None if exists else Path.home() / ".cache" / "fedcl"
    return cache_root(Path(path).expanduser() if exists else Path.home(), cache_dir or default_cache) / f"hf-{fp}"


def _build(
    parts: dict[str, Any], split_names: dict[str, str], img_col: str, lab_col: str, size: tuple[int, int] | None,
    class_names: list[str] | None, path: str, alloc: Callable[[str, tuple[int, ...], np.dtype], np.ndarray],
) -> dict[str, Any]:
    """Decode both splits into arrays from ``alloc`` (the cache's memory maps)."""
    datasets = _datasets()
    out: dict[str, Any] = {"meta": {"class_names": class_names}}
    raw = {s: ds.cast_column(img_col, datasets.Image(decode=False))
           if isinstance(ds.features[img_col], datasets.Image) else ds for s, ds in parts.items()}
    for split, ds in raw.items():
        if len(ds) == 0:
            raise DataError(f"{path}: the {split_names[split]} split is empty")
    first = raw["train"][0][img_col]
    mode = _mode_of(first)  # the first train image decides grey or RGB for all
    shape = _decode(first, size, mode).shape
    for split, ds in raw.items():
        x = alloc(f"x_{split}", (len(ds), *shape), np.dtype(np.uint8))
        _decode_into(x, ds, img_col, size, mode, f"{path} {split_names[split]}", f"row 0 of {split_names['train']}")
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.asarray(ds[lab_col], dtype=np.int64)
    return out


def read_hf(
    path: str,
    *,
    name: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    image_column: str | None = None,
    label_column: str | None = None,
    hf_cache_dir: str | None = None,
    size: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
) -> ImageData:
    """Read a Hugging Face image classification data set: uint8 ``N x C x H x W``, int64 labels.

    Parameters
    ----------
    path : str
        A ``save_to_disk`` folder or a hub name in the local cache.
    name : str | None
        The hub configuration (``load_dataset(path, name)``).
    train_split, test_split : str
        Split names (``"train"``, ``"test"``; e.g. ``"valid"`` for some sets).
    image_column, label_column : str | None
        Columns; None = the first ``Image`` / ``ClassLabel`` feature.
    hf_cache_dir : str | None
        The ``datasets`` cache to look in (None: its default).
    size : tuple[int, int] | None
        Resize every image to ``(height, width)``; None requires one size.
    cache_dir : str | Path | None
        Where fedcl caches the decoded arrays (default: ``~/.cache/fedcl`` for hub
        names, next to the folder otherwise).

    Raises
    ------
    DataError
        Not cached / not a dataset folder, a missing split or column, images of
        different sizes without ``size``, or an image that does not decode.
    """
    datasets = _datasets()
    dd = _open_splits(path, name, hf_cache_dir, train_split, test_split)
    feats = dd[train_split].features
    img_col = _column(feats, image_column, datasets.Image, "image", path)
    lab_col = _column(feats, label_column, datasets.ClassLabel, "label", path)
    label_feat = feats[lab_col]
    class_names = list(label_feat.names) if isinstance(label_feat, datasets.ClassLabel) else None
    split_names = {"train": train_split, "test": test_split}
    parts = {s: dd[split] for s, split in split_names.items()}
    files = [Path(f["filename"]) for ds in parts.values() for f in ds.cache_files]
    folder = _cache_folder(path, name, files, parts, split_names, [img_col, lab_col], size, cache_dir)
    build = functools.partial(_build, parts, split_names, img_col, lab_col, size, class_names, path)
    arrays = build_cached(folder, build)
    meta = cached_meta(folder)
    return ImageData(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        class_names=meta.get("class_names"), files=files,
        notes=[f"Hugging Face {path}: columns {img_col!r} / {lab_col!r}; decoded arrays cached in {folder}"],
    ).validate(path)
