"""SVHN .mat files and both notMNIST forms (GPM / FOT pickles, ACL's PNG folders)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from fedcl.data.notmnist import read_notmnist
from fedcl.data.svhn import read_svhn, read_svhn_mat
from fedcl.errors import DataError
from tests.fedcl.data.formats import write_notmnist_acl, write_notmnist_pickles, write_png, write_svhn


def test_svhn_layout_and_label_ten_is_zero(tmp_path: Path) -> None:
    # Prepare
    ref = write_svhn(tmp_path / "svhn", n_train=12)
    # Execute: the data folder or its svhn/ sub-folder
    data = read_svhn(tmp_path)
    # Assert: 32 x 32 x 3 x N became N x 3 x 32 x 32; 10 became 0
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    np.testing.assert_array_equal(data.x_test, ref["x_test"])
    assert data.y_train.tolist() == ref["y_train"].tolist() and 0 in data.y_train.tolist()
    assert data.y_train.dtype == np.int64 and data.x_train.flags["C_CONTIGUOUS"]


def test_svhn_truncated_and_wrong_variables(tmp_path: Path) -> None:
    # Prepare
    import scipy.io

    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    # Execute / Assert
    with pytest.raises(DataError, match=r"train_32x32\.mat is not a readable MATLAB file.*truncated"):
        read_svhn(tmp_path)
    scipy.io.savemat(path, {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(DataError, match=r"train_32x32\.mat lacks the variables X and y; it has \['images'\]"):
        read_svhn_mat(path)
    scipy.io.savemat(path, {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match=r"X is uint8 \(28, 28, 1, 2\); expected uint8 32 x 32 x 3 x N"):
        read_svhn_mat(path)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DataError, match=r"labels span 0\.\.3; SVHN's are 1\.\.10"):
        read_svhn_mat(path)


def test_svhn_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_32x32\.mat.*housenumbers"):
        read_svhn(tmp_path)


def test_notmnist_pickles(tmp_path: Path) -> None:
    # Prepare: notmnist.zip of notmnist_convert extracts the two pickles
    ref = write_notmnist_pickles(tmp_path / "notmnist")
    # Execute
    data = read_notmnist(tmp_path)
    # Assert: N x 1 x 32 x 32 became grey N x 32 x 32; labels 0..9 = A..J
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    assert data.x_test.shape == (4, 32, 32) and data.y_test.tolist() == ref["y_test"].tolist()
    assert data.class_names == list("ABCDEFGHIJ")


def test_notmnist_acl_folders_skip_broken_png(tmp_path: Path) -> None:
    # Prepare: ACL's notMNIST/Train|Test/<letter>/*.png plus one broken file, as notMNIST_small has
    ref = write_notmnist_acl(tmp_path)
    (tmp_path / "notMNIST" / "Train" / "C" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # Execute
    data = read_notmnist(tmp_path, cache_dir=tmp_path / "cache")
    # Assert: label = letter - 'A'; the broken image left out and reported
    order = np.lexsort((np.arange(len(ref["y_train"])), ref["y_train"]))
    assert data.x_train.shape == (20, 1, 28, 28)
    assert data.y_train.tolist() == ref["y_train"][order].tolist()
    np.testing.assert_array_equal(data.x_train[:, 0], ref["x_train"][order])
    assert any("broken.png" in n for n in data.notes)


def test_notmnist_corrupt_pickle_and_missing(tmp_path: Path) -> None:
    # Prepare
    write_notmnist_pickles(tmp_path)
    path = tmp_path / "notmnist_test.pkl"
    path.write_bytes(path.read_bytes()[:100])
    # Execute / Assert
    with pytest.raises(DataError, match=r"notmnist_test\.pkl is not a readable pickle"):
        read_notmnist(tmp_path)
    path.write_bytes(pickle.dumps({"features": np.zeros((2, 3, 32, 32), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match="expected uint8 N x 1 x H x W"):
        read_notmnist(tmp_path)
    with pytest.raises(DataError, match="notmnist_convert.*Adversarial-Continual-Learning"):
        read_notmnist(tmp_path / "nothing")


def test_notmnist_acl_only_broken_images(tmp_path: Path) -> None:
    # Prepare: every test image broken -> nothing to read
    write_png(tmp_path / "notMNIST" / "Train" / "A" / "a.png", np.zeros((28, 28), np.uint8))
    (tmp_path / "notMNIST" / "Test" / "A").mkdir(parents=True)
    # Execute / Assert
    with pytest.raises(DataError, match="no test images found"):
        read_notmnist(tmp_path, cache_dir=tmp_path / "cache")
