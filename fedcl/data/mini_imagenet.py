"""mini-ImageNet for continual learning: 100 classes, 84 x 84, 500 train + 100 test images per class.

Three on-disk forms are read, the first found wins:

1. FOT's code (``data_preprocess/mini_imagenet/seq_miniimagenet.py``, from the
   Mammoth library) loads ``train_x.npy``, ``train_y.npy``, ``test_x.npy`` and
   ``test_y.npy`` (``miniImagenet.zip`` in Mammoth's ``seq-miniimg``): uint8
   ``N x 84 x 84 x 3`` images and integer labels 0..99. Read memory-mapped, so
   the 1 GB train array is shared by every process and never copied whole.
2. Adversarial Continual Learning's ``data/split_miniimagenet.py`` writes
   ``miniimagenet/train.pkl`` and ``test.pkl``: pickles of a dict with
   ``images`` (a list of ``84 x 84 x 3`` uint8 arrays) and ``labels`` (ints).
   GPM's public repository has no mini-ImageNet loader.
3. An image-folder tree ``train/<class>/*.jpg`` + ``test/<class>/`` (or ``val/``),
   decoded once and cached (:mod:`fedcl.data.imagefolder`), resized to 84 x 84.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedcl.data.imagefolder import read_image_folder
from fedcl.data.images import ImageData, read_pickle_dict
from fedcl.errors import DataError

NPY = ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")
PKL = ("train.pkl", "test.pkl")
SIZE = 84


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy file ({type(exc).__name__}: {exc}); "
                        "it is truncated or corrupt: re-extract miniImagenet.zip") from exc


def _npy_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _load_npy(folder / f"{split}_x.npy"), _load_npy(folder / f"{split}_y.npy")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise DataError(f"{folder / f'{split}_x.npy'} is {x.dtype} {x.shape}; expected uint8 N x H x W x 3")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise DataError(f"{folder / f'{split}_y.npy'} is {y.dtype} {y.shape}; expected {len(x)} integer labels")
    # N x H x W x C -> N x C x H x W as a view of the memory map (slices are copied when a client needs them)
    return x.transpose(0, 3, 1, 2), np.asarray(y, dtype=np.int64)


def _pkl_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle_dict(path, ("images", "labels"))
    try:
        x = np.stack([np.asarray(im, dtype=np.uint8) for im in d["images"]])
    except ValueError as exc:
        raise DataError(f"{path}: the 'images' are not all the same shape ({exc})") from exc
    y = np.asarray(d["labels"], dtype=np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[3] != 3 or len(y) != len(x):
        raise DataError(f"{path}: {x.shape} images and {y.shape} labels; expected N x H x W x 3 and N labels")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y


def locate(root: str | Path) -> tuple[str, Path]:
    """``("npy" | "pkl" | "folder", path)`` for the first form found under ``root``."""
    root = Path(root)
    for c in (root, root / "MINIIMG", root / "mini_imagenet"):
        if (c / NPY[0]).is_file():
            return "npy", c
    for c in (root, root / "miniimagenet"):
        if (c / PKL[0]).is_file():
            return "pkl", c
    if (root / "train").is_dir():
        return "folder", root
    raise DataError(
        f"no mini-ImageNet at {root}: expected {', '.join(NPY)} (FOT / Mammoth), "
        f"{root / 'miniimagenet'}/train.pkl and test.pkl (ACL), or train/<class>/ and test/<class>/ image folders"
    )


def read_mini_imagenet(
    root: str | Path, *, cache_dir: str | Path | None = None, size: int = SIZE
) -> ImageData:
    """Read mini-ImageNet in any of the three forms: uint8 ``N x 3 x 84 x 84``, int64 labels 0..99.

    Parameters
    ----------
    root : str | Path
        The folder with the ``.npy`` files, the ``.pkl`` files, or ``train/`` and ``test/``.
    cache_dir : str | Path | None, default None
        Cache of the decoded image folder (form 3 only).
    size : int, default 84
        Side the image-folder form is resized to.

    Raises
    ------
    DataError
        A missing file of the form found, a truncated file, or inconsistent shapes.
    """
    kind, folder = locate(root)
    if kind == "npy":
        missing = [n for n in NPY if not (folder / n).is_file()]
        if missing:
            raise DataError(f"{folder} lacks {', '.join(missing)} (FOT's mini-ImageNet needs all four)")
        (x_tr, y_tr), (x_te, y_te) = _npy_split(folder, "train"), _npy_split(folder, "test")
        return ImageData(x_tr, y_tr, x_te, y_te, files=[folder / n for n in NPY]).validate(str(folder))
    if kind == "pkl":
        if not (folder / PKL[1]).is_file():
            raise DataError(f"{folder} has {PKL[0]} but not {PKL[1]}; run ACL's data/split_miniimagenet.py again")
        (x_tr, y_tr), (x_te, y_te) = _pkl_split(folder / PKL[0]), _pkl_split(folder / PKL[1])
        return ImageData(x_tr, y_tr, x_te, y_te, files=[folder / n for n in PKL]).validate(str(folder))
    return read_image_folder(folder, size=(size, size), cache_dir=cache_dir)
