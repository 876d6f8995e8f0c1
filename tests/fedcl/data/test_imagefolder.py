"""Image folders, Tiny-ImageNet, mini-ImageNet and the memory-mapped decode cache."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from fedcl.data import imagefolder
from fedcl.data.imagefolder import read_image_folder
from fedcl.data.mini_imagenet import read_mini_imagenet
from fedcl.data.tiny_imagenet import read_tiny_imagenet
from fedcl.errors import DataError
from tests.fedcl.data.formats import (
    write_mini_imagenet_npy,
    write_mini_imagenet_pkl,
    write_png,
    write_tiny_imagenet,
)


def _folder_tree(root: Path, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """train/{cat,ant}/ and val/{ant,cat}/ with PNGs (lossless: exact round trip)."""
    rng = np.random.default_rng(seed)
    imgs: dict[str, list[np.ndarray]] = {}
    for split, per in (("train", 3), ("val", 2)):
        for cls in ("cat", "ant"):
            for i in range(per):
                img = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                write_png(root / split / cls / f"{i}.png", img)
                imgs.setdefault(f"{split}/{cls}", []).append(img)
    return imgs


def test_image_folder_labels_sorted_and_exact(tmp_path: Path) -> None:
    # Prepare
    imgs = _folder_tree(tmp_path)
    # Execute
    data = read_image_folder(tmp_path)
    # Assert: classes sorted (ant = 0, cat = 1), files sorted inside a class, HWC -> CHW exactly
    assert data.class_names == ["ant", "cat"]
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1] and data.y_test.tolist() == [0, 0, 1, 1]
    assert data.x_train.shape == (6, 3, 6, 5) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[3], imgs["train/cat"][0].transpose(2, 0, 1))
    np.testing.assert_array_equal(data.x_test[1], imgs["val/ant"][1].transpose(2, 0, 1))


def test_cache_second_load_maps_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a first load decodes and writes the cache next to the data
    _folder_tree(tmp_path)
    first = read_image_folder(tmp_path)
    caches = list((tmp_path / ".fedcl_cache").iterdir())
    assert len(caches) == 1 and (caches[0] / "x_train.npy").is_file()

    def no_decode(*_a: object, **_k: object) -> np.ndarray:
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder, "_decode_one", no_decode)
    # Execute
    second = read_image_folder(tmp_path)
    # Assert: same arrays, read-only memory maps
    assert isinstance(second.x_train, np.memmap) and not second.x_train.flags.writeable
    np.testing.assert_array_equal(first.x_train, second.x_train)


def test_damaged_cache_says_which_folder_to_delete(tmp_path: Path) -> None:
    # Prepare: a cache whose test images were cut short (a disk filled up, a copy interrupted)
    _folder_tree(tmp_path)
    read_image_folder(tmp_path)
    (cache,) = (tmp_path / ".fedcl_cache").iterdir()
    (cache / "x_test.npy").write_bytes((cache / "x_test.npy").read_bytes()[:100])
    # Execute / Assert
    with pytest.raises(DataError, match=rf"the data cache {cache} is damaged .*delete that folder to rebuild it"):
        read_image_folder(tmp_path)


def test_cache_key_follows_the_file_list(tmp_path: Path) -> None:
    # Prepare
    _folder_tree(tmp_path)
    read_image_folder(tmp_path)
    # Execute: change one file (size and mtime change), then add one
    path = tmp_path / "train" / "cat" / "0.png"
    write_png(path, np.zeros((6, 5, 3), np.uint8))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = read_image_folder(tmp_path)
    write_png(tmp_path / "train" / "cat" / "9.png", np.ones((6, 5, 3), np.uint8))
    added = read_image_folder(tmp_path)
    # Assert: each change is a new cache and new arrays
    assert (changed.x_train[3] == 0).all() and len(added.y_train) == 7
    assert len(list((tmp_path / ".fedcl_cache").iterdir())) == 3


def test_read_only_data_caches_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the data folder is not writable; XDG_CACHE_HOME is
    _folder_tree(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_access = os.access
    monkeypatch.setattr("fedcl.data.cache.os.access",
                        lambda p, m: False if str(p).startswith(str(tmp_path / "data")) else real_access(p, m))
    # Execute
    data = read_image_folder(tmp_path / "data")
    # Assert
    assert not (tmp_path / "data" / ".fedcl_cache").exists()
    assert len(list((tmp_path / "xdg" / "fedcl").iterdir())) == 1 and len(data.y_train) == 6


def test_corrupt_image_and_size_mismatch(tmp_path: Path) -> None:
    # Prepare: a truncated PNG
    _folder_tree(tmp_path)
    bad = tmp_path / "val" / "cat" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])
    # Execute / Assert
    with pytest.raises(DataError, match=r"cannot decode image .*val/cat/1\.png"):
        read_image_folder(tmp_path)
    write_png(bad, np.zeros((7, 5, 3), np.uint8))
    with pytest.raises(DataError, match=r"1\.png is 7 x 5 but .* is 6 x 5; set stream.image_size"):
        read_image_folder(tmp_path)
    # Execute: resizing makes them agree
    data = read_image_folder(tmp_path, size=(4, 4))
    assert data.x_test.shape == (4, 3, 4, 4)
    # no half-written cache folder stays behind after the failures
    assert all(not p.name.count(".tmp-") for p in (tmp_path / ".fedcl_cache").iterdir())


def test_image_folder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs train/<class>/ and one of val/<class>/, test/<class>/"):
        read_image_folder(tmp_path)
    write_png(tmp_path / "train" / "a" / "x.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "test" / "zebra" / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"classes \['zebra'\] that .*train lacks"):
        read_image_folder(tmp_path)


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    # Prepare: wnids.txt unsorted; val images listed in val_annotations.txt; one val image greyscale
    ref = write_tiny_imagenet(tmp_path)
    # Execute
    data = read_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    # Assert: labels follow sorted wnids; val labels from the annotations; grey JPEG became RGB
    assert data.class_names == ref["order"] == ["n01", "n02", "n03"]
    assert data.x_train.shape == (6, 3, 64, 64) and data.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.y_test.tolist() == ref["val_labels"]
    # flat colours: JPEG keeps them to within rounding
    assert abs(int(data.x_train[2, 0, 10, 10]) - int(ref["train"]["n02"][0][10, 10, 0])) <= 2
    assert abs(int(data.x_test[3, 2, 5, 5]) - int(ref["val_imgs"][3][5, 5])) <= 2
    assert (data.x_test[3, 0] == data.x_test[3, 2]).all()


def test_tiny_imagenet_errors(tmp_path: Path) -> None:
    # Prepare
    ref = write_tiny_imagenet(tmp_path)
    ann = ref["folder"] / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    # Execute / Assert: an unknown wnid in the annotations
    ann.write_text("\n".join([*lines, "val_9.JPEG\tn99\t0\t0\t1\t1"]))
    with pytest.raises(DataError, match=r"val_annotations\.txt line 6.*<wnid from wnids\.txt>"):
        read_tiny_imagenet(tmp_path)
    ann.write_text("\n".join(lines))
    (ref["folder"] / "wnids.txt").write_text("n01\nn02\n")
    with pytest.raises(DataError, match=r"only in train/ \['n03'\]"):
        read_tiny_imagenet(tmp_path)
    with pytest.raises(DataError, match="tiny-imagenet-200.zip and unzip"):
        read_tiny_imagenet(tmp_path / "elsewhere")


def test_mini_imagenet_npy_memory_mapped(tmp_path: Path) -> None:
    # Prepare: FOT's (Mammoth's) four .npy files
    ref = write_mini_imagenet_npy(tmp_path / "MINIIMG")
    # Execute
    data = read_mini_imagenet(tmp_path)
    # Assert: N x 84 x 84 x 3 seen as N x 3 x 84 x 84 without a copy
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    np.testing.assert_array_equal(data.x_test, ref["x_test"])
    assert isinstance(data.x_train.base, np.memmap) or isinstance(data.x_train, np.memmap)
    assert data.y_train.tolist() == ref["y_train"].tolist()


def test_mini_imagenet_acl_pickles(tmp_path: Path) -> None:
    # Prepare
    ref = write_mini_imagenet_pkl(tmp_path)
    # Execute
    data = read_mini_imagenet(tmp_path)
    # Assert
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    assert data.y_test.tolist() == ref["y_test"].tolist()


def test_mini_imagenet_folder_resized_to_84(tmp_path: Path) -> None:
    # Prepare
    _folder_tree(tmp_path)
    (tmp_path / "val").rename(tmp_path / "test")
    # Execute
    data = read_mini_imagenet(tmp_path, cache_dir=tmp_path / "c")
    # Assert
    assert data.x_train.shape == (6, 3, 84, 84) and data.x_test.shape == (4, 3, 84, 84)


def test_mini_imagenet_errors(tmp_path: Path) -> None:
    # Prepare: a truncated .npy, then a pickle of the wrong keys
    write_mini_imagenet_npy(tmp_path)
    x = tmp_path / "test_x.npy"
    x.write_bytes(x.read_bytes()[:5000])
    # Execute / Assert
    with pytest.raises(DataError, match=r"test_x\.npy is not a readable \.npy file.*truncated"):
        read_mini_imagenet(tmp_path)
    (tmp_path / "test_y.npy").unlink()
    with pytest.raises(DataError, match=r"lacks test_y\.npy"):
        read_mini_imagenet(tmp_path)
    other = tmp_path / "acl" / "miniimagenet"
    other.mkdir(parents=True)
    (other / "train.pkl").write_bytes(pickle.dumps({"data": [], "labels": []}))
    (other / "test.pkl").write_bytes(pickle.dumps({"data": [], "labels": []}))
    with pytest.raises(DataError, match=r"train\.pkl lacks the keys \['images'\]"):
        read_mini_imagenet(tmp_path / "acl")
    with pytest.raises(DataError, match="FOT / Mammoth.*ACL"):
        read_mini_imagenet(tmp_path / "none")
