"""Tiny-ImageNet-200 (http://cs231n.stanford.edu/tiny-imagenet-200.zip), the extracted folder.

Layout of the original release::

    tiny-imagenet-200/
      wnids.txt                      200 WordNet ids, one per line
      words.txt                      wnid<TAB>names (all of ImageNet; optional here)
      train/<wnid>/images/*.JPEG     500 64 x 64 images per class
      val/images/val_<i>.JPEG        10,000 images
      val/val_annotations.txt        file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
      test/images/*.JPEG             no labels: not used

The test split of a stream is ``val`` (the labelled held-out set), as in GLFC
and TARGET. Labels follow the sorted wnids (torchvision ``ImageFolder`` on
``train/``). A ``val/`` already re-sorted into ``val/<wnid>/`` folders is read
too. A few images are greyscale JPEGs: they are converted to RGB.
"""

from __future__ import annotations

from pathlib import Path

from fedcl.data.imagefolder import class_folders, decode_splits, image_files
from fedcl.data.images import ImageData
from fedcl.errors import DataError

FOLDER = "tiny-imagenet-200"
ARCHIVE = "tiny-imagenet-200.zip"
ARCHIVE_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def locate(root: str | Path) -> Path:
    """``root/tiny-imagenet-200`` or ``root`` itself, whichever holds ``wnids.txt``."""
    root = Path(root)
    for c in (root / FOLDER, root):
        if (c / "wnids.txt").is_file():
            return c
    hint = f" ({root / ARCHIVE} is there: unzip it)" if (root / ARCHIVE).is_file() else ""
    raise DataError(f"no Tiny-ImageNet at {root}: expected {root / FOLDER}/wnids.txt, train/ and val/{hint}; "
                    f"download http://cs231n.stanford.edu/{ARCHIVE} and unzip it")


def _read_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _words(root: Path, wnids: list[str]) -> list[str]:
    """Human-readable names from words.txt where present, else the wnids."""
    path = root / "words.txt"
    if not path.is_file():
        return wnids
    table = dict(ln.split("\t", 1) for ln in _read_lines(path) if "\t" in ln)
    return [table.get(w, w) for w in wnids]


def _val_split(root: Path, index: dict[str, int]) -> tuple[list[Path], list[int]]:
    val = root / "val"
    ann = val / "val_annotations.txt"
    if ann.is_file():
        files, labels = [], []
        for n, line in enumerate(_read_lines(ann), 1):
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise DataError(f"{ann} line {n}: {line!r}; expected <file>\\t<wnid from wnids.txt>\\t<box>")
            path = val / "images" / parts[0]
            if not path.is_file():
                raise DataError(f"{ann} line {n} names {path}, which does not exist")
            files.append(path)
            labels.append(index[parts[1]])
        return files, labels
    if not val.is_dir() or not class_folders(val):
        raise DataError(f"{root} has neither val/val_annotations.txt (original layout) nor val/<wnid>/ folders")
    files, labels = [], []
    for wnid in class_folders(val):
        if wnid not in index:
            raise DataError(f"{val / wnid} is not a class of {root / 'wnids.txt'}")
        found = image_files(val / wnid)
        files += found
        labels += [index[wnid]] * len(found)
    return files, labels


def read_tiny_imagenet(root: str | Path, *, cache_dir: str | Path | None = None) -> ImageData:
    """Read Tiny-ImageNet-200: 100,000 train and 10,000 val images, uint8 ``N x 3 x 64 x 64``.

    Parameters
    ----------
    root : str | Path
        ``tiny-imagenet-200`` or the folder holding it.
    cache_dir : str | Path | None, default None
        Where the decoded arrays go (see :func:`fedcl.data.imagefolder.decode_splits`).

    Raises
    ------
    DataError
        Missing ``wnids.txt`` / ``train`` / ``val``, a train folder not in
        ``wnids.txt`` (or the reverse), a bad annotation line, an undecodable image.
    """
    root = locate(root)
    wnids = sorted(_read_lines(root / "wnids.txt"))
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{train} is missing; Tiny-ImageNet needs train/<wnid>/images/")
    present = class_folders(train)
    if present != wnids:
        extra, lacking = sorted(set(present) - set(wnids)), sorted(set(wnids) - set(present))
        raise DataError(f"{train} class folders and {root / 'wnids.txt'} differ: only in train/ {extra[:5]}, "
                        f"only in wnids.txt {lacking[:5]}")
    index = {w: k for k, w in enumerate(wnids)}
    files, labels = [], []
    for wnid in wnids:
        found = image_files(train / wnid)
        files += found
        labels += [index[wnid]] * len(found)
    data = decode_splits(root, "tiny_imagenet", {"train": (files, labels), "test": _val_split(root, index)},
                         wnids, size=None, channels=3, cache_dir=cache_dir)
    data.notes.append("class names (words.txt): " + "; ".join(_words(root, wnids)[:3]) + "; ...")
    return data
