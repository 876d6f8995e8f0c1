"""SVHN, cropped digits (http://ufldl.stanford.edu/housenumbers/): ``train_32x32.mat``, ``test_32x32.mat``.

Each file is a MATLAB (v5) file with ``X``, uint8 ``32 x 32 x 3 x N`` (height,
width, channel, sample), and ``y``, ``N x 1`` labels 1..10 where 10 stands for
the digit 0. Read with :func:`scipy.io.loadmat`, transposed to ``N x 3 x 32 x 32``
and relabelled so label ``k`` is the digit ``k`` (as torchvision's SVHN does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedcl.data.images import ImageData, md5_file
from fedcl.errors import DataError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
# torchvision.datasets.SVHN's checksums of the original files
FILE_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``.mat`` file as (uint8 ``N x 3 x 32 x 32``, int64 digit labels ``0..9``)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing; download it from http://ufldl.stanford.edu/housenumbers/")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except NotImplementedError as exc:  # an HDF5 (v7.3) file
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; SVHN's originals are v5: re-download it") from exc
    except Exception as exc:  # loadmat reports truncation as ValueError, TypeError, OSError, ...
        raise DataError(f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); "
                        "it is truncated or corrupt: re-download it") from exc
    if "X" not in mat or "y" not in mat:
        found = sorted(name for name, _shape, _cls in scipy.io.whosmat(str(path)))
        raise DataError(f"{path} lacks the variables X and y; it has {found}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: X is {x.dtype} {x.shape}; expected uint8 32 x 32 x 3 x N")
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: X holds {x.shape[3]} images but y {len(y)} labels")
    labels = y.astype(np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}; SVHN's are 1..10 (10 = digit 0)")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def locate(root: str | Path) -> Path:
    """``root`` or ``root/svhn``, whichever holds ``train_32x32.mat``."""
    root = Path(root)
    for c in (root, root / "svhn", root / "SVHN"):
        if (c / FILES["train"]).is_file():
            return c
    raise DataError(f"no SVHN at {root}: expected {root / FILES['train']} and {root / FILES['test']} "
                    "(http://ufldl.stanford.edu/housenumbers/, format 2: cropped digits)")


def read_svhn(root: str | Path) -> ImageData:
    """Read SVHN's train and test ``.mat`` files (73,257 and 26,032 images)."""
    root = locate(root)
    x_train, y_train = read_svhn_mat(root / FILES["train"])
    x_test, y_test = read_svhn_mat(root / FILES["test"])
    return ImageData(x_train, y_train, x_test, y_test, class_names=[str(d) for d in range(10)],
                     files=[root / f for f in FILES.values()]).validate(str(root))


def verify_files(root: Path) -> dict[str, bool | None]:
    """Per file: True = original MD5, False = differs, None = missing."""
    return {n: (md5_file(root / n) == m) if (root / n).is_file() else None for n, m in FILE_MD5.items()}
