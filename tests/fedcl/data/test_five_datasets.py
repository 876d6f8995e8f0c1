"""5-Datasets: five sources in their own formats assembled to 3 x 32 x 32 as in GPM / FOT / ACL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcl.data.five_datasets import SOURCES, read_five_datasets
from fedcl.errors import DataError
from tests.fedcl.data.formats import write_five_datasets


def test_assembled_in_papers_order_and_shape(tmp_path: Path) -> None:
    # Prepare
    ref = write_five_datasets(tmp_path)
    # Execute
    data = read_five_datasets(tmp_path)
    # Assert: task order CIFAR-10, MNIST, SVHN, Fashion-MNIST, notMNIST; label = 10 * source + label
    assert SOURCES == ("cifar10", "mnist", "svhn", "fashion_mnist", "notmnist")
    assert data.x_train.shape[1:] == (3, 32, 32) and data.x_train.dtype == np.uint8
    sizes = [len(ref[s]["y_train"]) for s in SOURCES]
    start = np.cumsum([0, *sizes])
    for s, name in enumerate(SOURCES):
        part = slice(start[s], start[s + 1])
        assert (data.extra["source_train"][part] == s).all()
        assert data.y_train[part].tolist() == (10 * s + np.asarray(ref[name]["y_train"])).tolist()
    # CIFAR-10 and SVHN unchanged
    np.testing.assert_array_equal(data.x_train[: sizes[0]], ref["cifar10"]["x_train"])
    np.testing.assert_array_equal(data.x_train[start[2] : start[3]], ref["svhn"]["x_train"])
    # MNIST: zero-padded by 2 (transforms.Pad(2, fill=0)) and repeated over 3 channels
    mnist = data.x_train[start[1] : start[2]]
    np.testing.assert_array_equal(mnist[:, 1, 2:30, 2:30], ref["mnist"]["x_train"])
    assert (mnist[:, :, :2] == 0).all() and (mnist[:, :, :, 30:] == 0).all()
    assert (mnist[:, 0] == mnist[:, 2]).all()
    # notMNIST: 32 x 32 already, repeated over channels
    np.testing.assert_array_equal(data.x_test[-4:, 0], ref["notmnist"]["x_test"])
    assert data.class_names is not None and data.class_names[20] == "svhn:0" and data.class_names[0] == "cifar10:class0"


def test_cached_and_source_override(tmp_path: Path) -> None:
    # Prepare: Fashion-MNIST somewhere else, named by stream.sources
    write_five_datasets(tmp_path / "data")
    (tmp_path / "data" / "fashion_mnist").rename(tmp_path / "fmnist_elsewhere")
    # Execute / Assert: missing under data_dir, found through sources
    with pytest.raises(DataError, match=r"no fashion_mnist IDX files.*stream\.sources\.fashion_mnist\.data_dir"):
        read_five_datasets(tmp_path / "data")
    a = read_five_datasets(tmp_path / "data", {"fashion_mnist": str(tmp_path / "fmnist_elsewhere")})
    b = read_five_datasets(tmp_path / "data", {"fashion_mnist": str(tmp_path / "fmnist_elsewhere")})
    assert isinstance(b.x_train, np.memmap)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    with pytest.raises(DataError, match=r"unknown names \['kmnist'\]"):
        read_five_datasets(tmp_path / "data", {"kmnist": "x"})
