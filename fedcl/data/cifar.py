"""CIFAR-10 / CIFAR-100, "python version" (https://www.cs.toronto.edu/~kriz/cifar.html).

Each batch file is a pickle (written by Python 2) of a dict: ``data`` is a uint8
``N x 3072`` array whose rows hold the red, green and blue 32 x 32 planes in row
order, ``labels`` (CIFAR-10) or ``fine_labels`` and ``coarse_labels`` (CIFAR-100)
are lists of ints. The class names are in ``batches.meta`` (``label_names``) or
``meta`` (``fine_label_names``, ``coarse_label_names``). Data are read from the
extracted folder or straight from the original ``.tar.gz``, whose MD5 is
checked; an archive with the right members but another checksum (re-packed,
say) is read with a warning.
"""

from __future__ import annotations

import tarfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcl.data.images import ImageData, as_names, load_pickle, md5_file, require_keys
from fedcl.errors import DataError


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR variant keeps what, and the original checksums."""

    name: str
    folder: str
    archive: str
    archive_md5: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    file_md5: dict[str, str]


CIFAR10 = CifarFormat(
    name="CIFAR-10", folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)), test="test_batch", meta="batches.meta",
    label_key="labels", names_key="label_names",
    # torchvision.datasets.CIFAR10's per-file checksums of the original release
    file_md5={"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
              "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
              "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
              "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
)
CIFAR100 = CifarFormat(
    name="CIFAR-100", folder="cifar-100-python", archive="cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    train=("train",), test="test", meta="meta", label_key="fine_labels", names_key="fine_label_names",
    file_md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
              "meta": "7973b15100ade9c7d40fb424638fde48"},
)
FORMATS = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _parse_batch(raw: bytes, where: str, fmt: CifarFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    keys = ("data", fmt.label_key) + (("coarse_labels",) if fmt is CIFAR100 else ())
    d = require_keys(load_pickle(raw, where), keys, where)
    data = np.asarray(d["data"])
    labels = np.asarray(d[fmt.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: 'data' is {data.dtype} {data.shape}; expected uint8 N x 3072 (3 planes of 32 x 32)")
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but {labels.shape} '{fmt.label_key}'")
    coarse = np.asarray(d["coarse_labels"], dtype=np.int64) if fmt is CIFAR100 else None
    if coarse is not None and coarse.shape != labels.shape:
        raise DataError(f"{where}: 'coarse_labels' has shape {coarse.shape}, 'fine_labels' {labels.shape}")
    # rows are R, G, B planes, each 32 rows of 32: a reshape, no copy
    return data.reshape(-1, 3, 32, 32), labels, coarse


def _members_from_archive(path: Path, fmt: CifarFormat, notes: list[str]) -> Callable[[str], bytes]:
    digest = md5_file(path)
    if digest != fmt.archive_md5:
        msg = (f"{path} has MD5 {digest}, not the original {fmt.archive} ({fmt.archive_md5}); "
               "reading it anyway since its members have the expected layout")
        notes.append(msg)
    try:
        with tarfile.open(path, "r:gz") as tar:
            wanted = {f"{fmt.folder}/{n}" for n in (*fmt.train, fmt.test, fmt.meta)}
            blobs: dict[str, bytes] = {}
            for member in tar:
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    blobs[member.name.split("/", 1)[1]] = f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .tar.gz ({type(exc).__name__}: {exc}); the archive is "
                        f"truncated or corrupt: download {fmt.archive} again") from exc
    missing = sorted({n.split("/", 1)[1] for n in wanted} - set(blobs))
    if missing:
        raise DataError(f"{path} lacks {', '.join(f'{fmt.folder}/{m}' for m in missing)}; "
                        f"is it the {fmt.name} python version ({fmt.archive})?")
    if digest != fmt.archive_md5:
        warnings.warn(notes[-1], stacklevel=3)
    return lambda name: blobs[name]


def locate(root: str | Path, fmt: CifarFormat) -> Path:
    """The extracted folder or the archive under ``root`` (or ``root`` itself), else a DataError saying what to do."""
    root = Path(root)
    candidates = [root / fmt.folder, root / fmt.archive, root]
    for c in candidates:
        if c.is_dir() and (c / fmt.meta).is_file():
            return c
        if c.is_file() and c.name.endswith((".tar.gz", ".tgz")):
            return c
    raise DataError(
        f"no {fmt.name} found at {root}: expected the folder {root / fmt.folder} (with "
        f"{', '.join((*fmt.train, fmt.test, fmt.meta))}) or the archive {root / fmt.archive}; "
        f"download the python version from https://www.cs.toronto.edu/~kriz/cifar.html"
    )


def _members_from_folder(where: Path, fmt: CifarFormat) -> Callable[[str], bytes]:
    """A reader of the extracted folder's files (all of them must be there)."""
    missing = [n for n in (*fmt.train, fmt.test, fmt.meta) if not (where / n).is_file()]
    if missing:
        raise DataError(f"{fmt.name} folder {where} lacks {', '.join(missing)}; re-extract {fmt.archive}")

    def read(name: str) -> bytes:
        try:
            return (where / name).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {where / name}: {exc}") from exc

    return read


def read_cifar(root: str | Path, variant: str) -> ImageData:
    """Read CIFAR-10 (``variant="cifar10"``) or CIFAR-100 (``"cifar100"``), python version.

    Parameters
    ----------
    root : str | Path
        The extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``), a folder
        holding it, or the original ``.tar.gz`` (its MD5 is checked; another
        checksum only warns).
    variant : str
        ``"cifar10"`` or ``"cifar100"``.

    Returns
    -------
    ImageData
        uint8 ``N x 3 x 32 x 32`` images (50,000 train, 10,000 test for the
        originals), int64 labels, class names; CIFAR-100 also has its 20 coarse
        labels in ``extra["coarse_train"]`` / ``extra["coarse_test"]`` (their names in ``notes``).

    Raises
    ------
    DataError
        Missing file, truncated archive or pickle, or a batch of the wrong layout.
    """
    fmt = FORMATS[variant]
    where = locate(root, fmt)
    notes: list[str] = []
    if where.is_file():
        read = _members_from_archive(where, fmt, notes)
        label = f"{where}:{fmt.folder}/"
        files = [where]
    else:
        read = _members_from_folder(where, fmt)
        label = f"{where}/"
        files = [where / n for n in (*fmt.train, fmt.test, fmt.meta)]
    parts = [_parse_batch(read(n), label + n, fmt) for n in fmt.train]
    x_test, y_test, c_test = _parse_batch(read(fmt.test), label + fmt.test, fmt)
    meta = require_keys(load_pickle(read(fmt.meta), label + fmt.meta), (fmt.names_key,), label + fmt.meta)
    names = as_names(meta[fmt.names_key])
    extra: dict[str, np.ndarray] = {}
    if fmt is CIFAR100:
        extra = {"coarse_train": np.concatenate([p[2] for p in parts if p[2] is not None]),
                 "coarse_test": c_test if c_test is not None else np.zeros(0, np.int64)}
        if "coarse_label_names" in meta:
            coarse = as_names(meta["coarse_label_names"])
            more = ", ..." if len(coarse) > 5 else ""
            notes.append(f"{len(coarse)} coarse classes: " + ", ".join(coarse[:5]) + more)
    data = ImageData(
        x_train=np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0],
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=x_test, y_test=y_test, class_names=names, files=files, notes=notes, extra=extra,
    )
    return data.validate(str(where))


def verify_files(folder: Path, variant: str) -> dict[str, bool | None]:
    """Per file of an extracted folder: True = original MD5, False = differs, None = missing."""
    fmt = FORMATS[variant]
    return {name: (md5_file(folder / name) == md5) if (folder / name).is_file() else None
            for name, md5 in fmt.file_md5.items()}
