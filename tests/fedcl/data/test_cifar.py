"""CIFAR-10 / CIFAR-100 python-version reader: exact layout, archives, checksums and corrupt files."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from fedcl.data import cifar
from fedcl.data.cifar import read_cifar
from fedcl.errors import DataError
from tests.fedcl.data.formats import py2_pickle, tar_folder, write_cifar


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_folder_round_trip(tmp_path: Path, variant: str) -> None:
    # Prepare
    ref = write_cifar(tmp_path, variant)
    # Execute: the parent folder and the extracted folder itself both work
    for root in (tmp_path, ref["folder"]):
        data = read_cifar(root, variant)
        # Assert: the R, G, B planes land in channels 0, 1, 2 in row order
        np.testing.assert_array_equal(data.x_train, ref["x_train"])
        np.testing.assert_array_equal(data.x_test, ref["x_test"])
        assert data.x_train.dtype == np.uint8 and data.x_train.shape == (10, 3, 32, 32)
        assert data.y_train.dtype == np.int64 and data.y_train.tolist() == ref["y_train"].tolist()
        assert data.y_test.tolist() == ref["y_test"].tolist()
        assert data.class_names == ref["names"]
    if variant == "cifar100":
        assert data.extra["coarse_train"].tolist() == ref["coarse_train"].tolist()


def test_plane_order_is_rgb_rows(tmp_path: Path) -> None:
    # Prepare: one image whose 3072 bytes are 0..1023 (red plane) then 1024 x 1, 1024 x 2
    ref = write_cifar(tmp_path, "cifar10", n_train=5, n_test=1)
    row = np.concatenate([np.arange(1024) % 256, np.full(1024, 1), np.full(1024, 2)]).astype(np.uint8)
    d = pickle.loads((ref["folder"] / "test_batch").read_bytes(), encoding="latin1")
    d["data"] = row[None]
    (ref["folder"] / "test_batch").write_bytes(py2_pickle(d))
    # Execute
    x = read_cifar(tmp_path, "cifar10").x_test[0]
    # Assert: pixel (r, c) of the red plane is byte 32 r + c
    assert x[0, 0, :5].tolist() == [0, 1, 2, 3, 4] and x[0, 1, 0] == 32
    assert (x[1] == 1).all() and (x[2] == 2).all()


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_archive_with_other_checksum_reads_with_warning(tmp_path: Path, variant: str) -> None:
    # Prepare: our archive has the original's layout but not its MD5
    ref = write_cifar(tmp_path / "src", variant)
    fmt = cifar.FORMATS[variant]
    archive = tar_folder(ref["folder"], tmp_path / fmt.archive)
    # Execute
    with pytest.warns(UserWarning, match=f"not the original {fmt.archive}"):
        data = read_cifar(archive, variant)
    # Assert
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    assert any("MD5" in n for n in data.notes)


def test_archive_with_original_checksum_reads_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: pretend our archive's MD5 is the published one
    ref = write_cifar(tmp_path / "src", "cifar10")
    archive = tar_folder(ref["folder"], tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10", cifar.CifarFormat(**{**cifar.CIFAR10.__dict__,
                                                              "archive_md5": cifar.md5_file(archive)}))
    monkeypatch.setitem(cifar.FORMATS, "cifar10", cifar.CIFAR10)
    # Execute
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_cifar(tmp_path, "cifar10")
    # Assert
    assert data.notes == [] and len(data.y_train) == 10


def test_truncated_archive_names_the_file(tmp_path: Path) -> None:
    # Prepare
    ref = write_cifar(tmp_path / "src", "cifar10")
    archive = tar_folder(ref["folder"], tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    # Execute / Assert
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz.*truncated or corrupt"):
        read_cifar(archive, "cifar10")


def test_archive_missing_a_member(tmp_path: Path) -> None:
    # Prepare
    ref = write_cifar(tmp_path / "src", "cifar10")
    (ref["folder"] / "data_batch_3").unlink()
    archive = tar_folder(ref["folder"], tmp_path / "cifar-10-python.tar.gz")
    # Execute / Assert
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_3"):
        read_cifar(archive, "cifar10")


def test_truncated_batch_names_the_file(tmp_path: Path) -> None:
    # Prepare
    ref = write_cifar(tmp_path, "cifar100")
    path = ref["folder"] / "train"
    path.write_bytes(path.read_bytes()[:-500])
    # Execute / Assert
    with pytest.raises(DataError, match=r"cifar-100-python/train is not a readable pickle.*truncated"):
        read_cifar(tmp_path, "cifar100")


def test_wrong_keys_and_shapes(tmp_path: Path) -> None:
    # Prepare: a CIFAR-10 batch under CIFAR-100's name, then a batch of 28 x 28 rows
    ref = write_cifar(tmp_path, "cifar100")
    d = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    (ref["folder"] / "train").write_bytes(py2_pickle(d))
    # Execute / Assert
    with pytest.raises(DataError, match=r"train lacks the keys \['fine_labels', 'coarse_labels'\]"):
        read_cifar(tmp_path, "cifar100")
    d = {"data": np.zeros((2, 784), np.uint8), "fine_labels": [0, 1], "coarse_labels": [0, 0]}
    (ref["folder"] / "train").write_bytes(py2_pickle(d))
    with pytest.raises(DataError, match="expected uint8 N x 3072"):
        read_cifar(tmp_path, "cifar100")


def test_missing_folder_and_file(tmp_path: Path) -> None:
    # Execute / Assert: nothing there
    with pytest.raises(DataError, match="cifar-10-batches-py.*cs.toronto.edu"):
        read_cifar(tmp_path, "cifar10")
    ref = write_cifar(tmp_path, "cifar10")
    (ref["folder"] / "data_batch_5").unlink()
    with pytest.raises(DataError, match="lacks data_batch_5"):
        read_cifar(tmp_path, "cifar10")


def test_gzip_is_not_tar(tmp_path: Path) -> None:
    # Prepare: a .tar.gz that is a gzip of something else
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(gzip.compress(b"not a tar file" * 100))
    # Execute / Assert
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz is not a readable \.tar\.gz"):
        read_cifar(bad, "cifar10")


def test_verify_files(tmp_path: Path) -> None:
    # Prepare
    ref = write_cifar(tmp_path, "cifar10")
    (ref["folder"] / "test_batch").unlink()
    # Execute
    status = cifar.verify_files(ref["folder"], "cifar10")
    # Assert: our files are not the originals; the deleted one is missing
    assert status["test_batch"] is None and status["data_batch_1"] is False
