"""Writers of small files in the exact published formats, for the reader tests.

Each writer produces what the original release holds, at a tiny scale: the
CIFAR batches are Python 2 pickles (``SHORT_BINSTRING`` keys, a numpy array
whose global is ``numpy.core.multiarray._reconstruct``), SVHN is a MATLAB v5
file with ``X`` as ``32 x 32 x 3 x N``, Tiny-ImageNet has its ``wnids.txt`` and
``val/val_annotations.txt``, and so on. Arrays are returned so tests compare.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np


class _Py2Pickler(pickle._Pickler):  # type: ignore[misc]  # the pure-Python pickler lets us emit Python 2 opcodes
    """Pickles as Python 2's cPickle did (protocol 2): str and bytes as ``BINSTRING``, numpy under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = str(getattr(obj, "__module__", ""))
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str
    dispatch[type] = save_global
    dispatch[type(len)] = save_global


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled the way Python 2 wrote the CIFAR and notMNIST files."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_cifar(root: Path, variant: str, n_train: int = 10, n_test: int = 6, seed: int = 0) -> dict[str, Any]:
    """An extracted ``cifar-10-batches-py`` (5 train batches) or ``cifar-100-python`` folder under ``root``."""
    rng = np.random.default_rng(seed)
    c10 = variant == "cifar10"
    folder = root / ("cifar-10-batches-py" if c10 else "cifar-100-python")
    folder.mkdir(parents=True)
    classes = 10 if c10 else 100
    x_train, x_test = _images(rng, (n_train, 3, 32, 32)), _images(rng, (n_test, 3, 32, 32))
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    coarse_train, coarse_test = y_train // 5, y_test // 5

    def batch(x: np.ndarray, y: np.ndarray, coarse: np.ndarray, label: str) -> dict[str, Any]:
        d: dict[str, Any] = {"batch_label": label, "data": x.reshape(len(x), 3072),
                             "filenames": [f"img_{i}.png" for i in range(len(x))]}
        if c10:
            d["labels"] = [int(v) for v in y]
        else:
            d["fine_labels"], d["coarse_labels"] = [int(v) for v in y], [int(v) for v in coarse]
        return d

    if c10:
        chunks = np.array_split(np.arange(n_train), 5)
        for i, idx in enumerate(chunks, 1):
            (folder / f"data_batch_{i}").write_bytes(
                py2_pickle(batch(x_train[idx], y_train[idx], coarse_train[idx], f"training batch {i} of 5")))
        (folder / "test_batch").write_bytes(py2_pickle(batch(x_test, y_test, coarse_test, "testing batch 1 of 1")))
        names = [f"class{k}" for k in range(10)]
        (folder / "batches.meta").write_bytes(py2_pickle({"num_cases_per_batch": 10000, "label_names": names,
                                                          "num_vis": 3072}))
    else:
        (folder / "train").write_bytes(py2_pickle(batch(x_train, y_train, coarse_train, "training batch 1 of 1")))
        (folder / "test").write_bytes(py2_pickle(batch(x_test, y_test, coarse_test, "testing batch 1 of 1")))
        names = [f"fine{k}" for k in range(100)]
        (folder / "meta").write_bytes(py2_pickle({"fine_label_names": names,
                                                  "coarse_label_names": [f"coarse{k}" for k in range(20)]}))
    return {"folder": folder, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "coarse_train": coarse_train, "names": names}


def tar_folder(folder: Path, archive: Path) -> Path:
    """``folder`` as a ``.tar.gz`` with the folder's name as the top-level member, as the originals are."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_svhn(root: Path, n_train: int = 7, n_test: int = 5, seed: int = 0) -> dict[str, Any]:
    """``train_32x32.mat`` / ``test_32x32.mat``: X uint8 32 x 32 x 3 x N, y N x 1 in 1..10 (10 = digit 0)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"folder": root}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, (n, 3, 32, 32))
        digits = np.arange(n) % 10  # every digit, 0 included
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y})
        out[f"x_{split}"], out[f"y_{split}"] = x, digits
    return out


def write_notmnist_pickles(root: Path, n_train: int = 9, n_test: int = 4, seed: int = 0) -> dict[str, Any]:
    """notmnist_convert's pickles: {'features': uint8 N x 1 x 32 x 32, 'labels': uint8 N}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"folder": root}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _images(rng, (n, 1, 32, 32)), (np.arange(n) % 10).astype(np.uint8)
        (root / f"notmnist_{split}.pkl").write_bytes(pickle.dumps({"features": x, "labels": y}, protocol=4))
        out[f"x_{split}"], out[f"y_{split}"] = x[:, 0], y.astype(np.int64)
    return out


def write_png(path: Path, arr: np.ndarray, fmt: str = "PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def write_notmnist_acl(root: Path, per_letter: int = 2, seed: int = 0) -> dict[str, Any]:
    """ACL's notMNIST/Train|Test/<A..J>/*.png, 28 x 28 grey."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"folder": root / "notMNIST"}
    for split, sub in (("train", "Train"), ("test", "Test")):
        xs, ys = [], []
        for k in range(10):
            for i in range(per_letter):
                img = _images(rng, (28, 28))
                write_png(root / "notMNIST" / sub / chr(65 + k) / f"img{i}.png", img)
                xs.append(img)
                ys.append(k)
        out[f"x_{split}"], out[f"y_{split}"] = np.stack(xs), np.array(ys)
    return out


def write_tiny_imagenet(root: Path, wnids: tuple[str, ...] = ("n02", "n01", "n03"), per_class: int = 2,
                        val: int = 5) -> dict[str, Any]:
    """A tiny-imagenet-200 tree: wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images + annotations."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}, other\n" for w in wnids))
    order = sorted(wnids)
    train: dict[str, list[np.ndarray]] = {}
    for w in wnids:
        (base / "train" / w).mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
        imgs = []
        for i in range(per_class):
            img = (np.full((64, 64, 3), 40 * order.index(w) + i, np.uint8))  # flat colours survive JPEG exactly
            write_png(base / "train" / w / "images" / f"{w}_{i}.JPEG", img, "JPEG")
            imgs.append(img)
        train[w] = imgs
    lines, val_labels, val_imgs = [], [], []
    for i in range(val):
        w = wnids[i % len(wnids)]
        img = np.full((64, 64), 200 + i, np.uint8)  # a greyscale JPEG, as some of Tiny-ImageNet's are
        write_png(base / "val" / "images" / f"val_{i}.JPEG", img, "JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n")
        val_labels.append(order.index(w))
        val_imgs.append(img)
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True)
    return {"folder": base, "order": order, "train": train, "val_labels": val_labels, "val_imgs": val_imgs}


def write_mini_imagenet_npy(root: Path, n_train: int = 8, n_test: int = 4, seed: int = 0) -> dict[str, Any]:
    """Mammoth's / FOT's miniImagenet: train_x.npy (N x 84 x 84 x 3 uint8), train_y.npy, test_x.npy, test_y.npy."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"folder": root}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _images(rng, (n, 84, 84, 3)), rng.integers(0, 100, n)
        np.save(root / f"{split}_x.npy", x)
        np.save(root / f"{split}_y.npy", y)
        out[f"x_{split}"], out[f"y_{split}"] = x.transpose(0, 3, 1, 2), y
    return out


def write_mini_imagenet_pkl(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 0) -> dict[str, Any]:
    """ACL's split_miniimagenet.py output: miniimagenet/{train,test}.pkl = {'images': [84x84x3], 'labels': [...]}."""
    rng = np.random.default_rng(seed)
    folder = root / "miniimagenet"
    folder.mkdir(parents=True)
    out: dict[str, Any] = {"folder": folder}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = [_images(rng, (84, 84, 3)) for _ in range(n)]
        labels = [int(v) for v in rng.integers(0, 100, n)]
        (folder / f"{split}.pkl").write_bytes(pickle.dumps({"images": imgs, "labels": labels}))
        out[f"x_{split}"], out[f"y_{split}"] = np.stack(imgs).transpose(0, 3, 1, 2), np.array(labels)
    return out


def idx_bytes(arr: np.ndarray) -> bytes:
    """A uint8 array as an IDX file (dtype code 0x08)."""
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(folder: Path, n_train: int = 8, n_test: int = 4, seed: int = 0) -> dict[str, Any]:
    """The four gzip'd MNIST-format IDX files, 28 x 28."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"folder": folder}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        x, y = _images(rng, (n, 28, 28)), (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    return out


def write_five_datasets(root: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """All five sources under ``root`` in the default sub-folders."""
    return {
        "cifar10": write_cifar(root, "cifar10", n_train=10, n_test=5, seed=seed),
        "mnist": write_idx(root / "mnist", seed=seed + 1),
        "svhn": write_svhn(root / "svhn", seed=seed + 2),
        "fashion_mnist": write_idx(root / "fashion_mnist", seed=seed + 3),
        "notmnist": write_notmnist_pickles(root / "notmnist", seed=seed + 4),
    }
