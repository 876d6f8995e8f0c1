"""What every image reader returns, and the checks and conversions they share.

Readers (``cifar.py``, ``svhn.py``, ``notmnist.py``, ``tiny_imagenet.py``,
``mini_imagenet.py``, ``imagefolder.py``, ``hf.py``) each parse one published
format and hand back an :class:`ImageData`: uint8 images ``N x C x H x W``
(``N x H x W`` for grey), int64 labels, the class names where the format has
them, and the files they read (so ``python -m simulations.data check`` can list
them). Every failure is a :class:`~fedcl.errors.DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.errors import DataError


@dataclass
class ImageData:
    """A data set's train and test splits.

    Parameters
    ----------
    x_train, x_test : np.ndarray
        uint8 images, ``N x C x H x W`` (or ``N x H x W`` for grey formats).
        May be read-only memory maps: index them, never write into them.
    y_train, y_test : np.ndarray
        int64 labels ``[N]`` in ``0..num_classes-1``.
    class_names : list[str] | None, default None
        Name of each label, where the format has them.
    files : list[Path], default []
        The files (or folders) the reader used.
    notes : list[str], default []
        Facts worth reporting (a non-original archive, a cache hit, ...).
    extra : dict[str, np.ndarray], default {}
        Further per-sample arrays of the format (CIFAR-100's coarse labels).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1

    def validate(self, where: str) -> ImageData:
        """Raise :class:`DataError` unless images and labels agree in dtype, rank and length."""
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim not in (3, 4):
                raise DataError(f"{where}: {split} images are {x.dtype} {x.shape}; expected uint8 N x [C x] H x W")
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{where}: {len(x)} {split} images but labels of shape {y.shape}")
            if len(y) and (y.min() < 0 or (self.class_names is not None and y.max() >= len(self.class_names))):
                raise DataError(f"{where}: {split} labels span {y.min()}..{y.max()}, outside the format's classes")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{where}: train images are {self.x_train.shape[1:]} but test images "
                            f"{self.x_test.shape[1:]}")
        return self


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return digest.hexdigest()


def load_pickle(raw: bytes, where: str | Path) -> Any:
    """Unpickle a data file written by Python 2 or 3.

    ``encoding="latin1"`` is how Python 2 pickles of numpy arrays load (the CIFAR
    batches and notMNIST's pickles come from Python 2); it does not change
    Python 3 pickles. Dict keys are returned as ``str`` whatever they were.
    """
    try:
        with warnings.catch_warnings():
            # Python 2 numpy pickles name numpy.core.multiarray, which numpy 2 only aliases
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = pickle.loads(raw, encoding="latin1")  # noqa: S301 - local data files the user points to
    except Exception as exc:  # truncation shows up as EOFError, UnpicklingError, ValueError, ...
        raise DataError(f"{where} is not a readable pickle ({type(exc).__name__}: {exc}); "
                        "the file is truncated or corrupt: re-download or re-extract it") from exc
    if isinstance(obj, dict):
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


def read_pickle_dict(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The dict pickled in the file ``path``, holding ``keys`` (a DataError naming the file otherwise)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return require_keys(load_pickle(raw, path), keys, path)


def require_keys(obj: Any, keys: tuple[str, ...], where: str | Path) -> dict[str, Any]:
    """``obj`` as a dict holding ``keys``, else a DataError listing what the file has."""
    if not isinstance(obj, dict):
        raise DataError(f"{where} holds a {type(obj).__name__}; expected a dict with keys {list(keys)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{where} lacks the keys {missing}; it has {sorted(map(str, obj))}")
    return obj


def as_names(values: Any) -> list[str]:
    """A list of class names (str or bytes) as str."""
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def to_rgb_chw(x: np.ndarray, size: int = 32) -> np.ndarray:
    """Grey ``N x H x W`` / ``N x 1 x H x W`` or colour ``N x 3 x H x W`` uint8 images as ``N x 3 x size x size``.

    Smaller images are zero-padded around the centre (``transforms.Pad(2, fill=0)``
    takes MNIST's 28 x 28 to 32 x 32 in GPM's and ACL's 5-Datasets loaders) and
    grey ones replicated to three channels (their ``image.expand(1, 3, H, W)``).
    """
    if x.ndim == 3:
        x = x[:, None]
    n, c, h, w = x.shape
    if h > size or w > size or (h - size) % 2 or (w - size) % 2:
        raise ValueError(f"cannot pad {h} x {w} images to {size} x {size} symmetrically")
    out = np.zeros((n, 3, size, size), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, :, top : top + h, left : left + w] = x if c == 3 else np.repeat(x, 3, axis=1)
    return out
