"""notMNIST (letters A-J in many fonts), in the two forms the 5-Datasets papers' code reads.

1. GPM's and FOT's loaders (``dataloader/five_datasets.py``, class ``notMNIST``)
   read ``notmnist_train.pkl`` and ``notmnist_test.pkl`` from ``notmnist.zip`` of
   https://github.com/nkundiushuti/notmnist_convert: pickles of a dict with
   ``features``, uint8 ``N x 1 x 32 x 32`` (notMNIST_small resized to 32 x 32),
   and ``labels``, ``0..9`` for A..J (a 90/10 split of notMNIST_small).
2. Adversarial Continual Learning's loader (``src/dataloaders/datasets_utils.py``,
   class ``notMNIST_``) reads ``notMNIST/Train/<A..J>/*.png`` and
   ``notMNIST/Test/<A..J>/*.png`` (28 x 28) from its ``data/notMNIST.zip``; the
   label is ``ord(folder) - ord('A')`` and images that do not decode are skipped,
   as there.

:func:`read_notmnist` reads whichever is present (the pickles first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedcl.data.imagefolder import decode_splits, image_files
from fedcl.data.images import ImageData, read_pickle_dict
from fedcl.errors import DataError

PICKLES = {"train": "notmnist_train.pkl", "test": "notmnist_test.pkl"}
LETTERS = [chr(ord("A") + k) for k in range(10)]
ACL_SPLITS = {"train": "Train", "test": "Test"}


def _read_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle_dict(path, ("features", "labels"))
    x, y = np.asarray(d["features"]), np.asarray(d["labels"]).reshape(-1)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{path}: 'features' is {x.dtype} {np.asarray(d['features']).shape}; "
                        "expected uint8 N x 1 x H x W (notmnist_convert's 32 x 32)")
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    labels = y.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}; expected 0..9 (A..J)")
    return np.ascontiguousarray(x), labels


def _acl_split(folder: Path) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for k, letter in enumerate(LETTERS):
        if (folder / letter).is_dir():
            found = image_files(folder / letter)
            files += found
            labels += [k] * len(found)
    return files, labels


def locate(root: str | Path) -> tuple[str, Path]:
    """``("pickle", folder)`` or ``("acl", folder of notMNIST/)`` under ``root``, else a DataError."""
    root = Path(root)
    for c in (root, root / "notmnist", root / "notMNIST_small"):
        if (c / PICKLES["train"]).is_file():
            return "pickle", c
    for c in (root / "notMNIST", root):
        if (c / "Train").is_dir() and (c / "Test").is_dir():
            return "acl", c
    raise DataError(
        f"no notMNIST at {root}: expected {root / PICKLES['train']} and {root / PICKLES['test']} "
        "(GPM / FOT: notmnist.zip of github.com/nkundiushuti/notmnist_convert) or "
        f"{root / 'notMNIST/Train/<A..J>/'} and Test/ (ACL: data/notMNIST.zip of "
        "github.com/facebookresearch/Adversarial-Continual-Learning)"
    )


def read_notmnist(root: str | Path, *, cache_dir: str | Path | None = None) -> ImageData:
    """Read notMNIST: grey uint8 ``N x 32 x 32`` (pickles) or ``N x 1 x 28 x 28`` (ACL's PNGs), labels 0..9 = A..J."""
    kind, folder = locate(root)
    if kind == "pickle":
        if not (folder / PICKLES["test"]).is_file():
            raise DataError(f"{folder} has {PICKLES['train']} but not {PICKLES['test']}; unzip notmnist.zip again")
        x_train, y_train = _read_pickle(folder / PICKLES["train"])
        x_test, y_test = _read_pickle(folder / PICKLES["test"])
        return ImageData(x_train, y_train, x_test, y_test, class_names=list(LETTERS),
                         files=[folder / p for p in PICKLES.values()]).validate(str(folder))
    splits = {s: _acl_split(folder / sub) for s, sub in ACL_SPLITS.items()}
    return decode_splits(folder, "notmnist_acl", splits, list(LETTERS), channels=1, cache_dir=cache_dir,
                         skip_broken=True)
