"""Hugging Face data sets, offline: save_to_disk folders and hub names in the local cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcl.data.hf import read_hf
from fedcl.errors import DataError

datasets = pytest.importorskip("datasets")


def _dataset_dict(n_train: int = 6, n_test: int = 3, grey: bool = False, seed: int = 0) -> tuple[Any, dict]:
    rng = np.random.default_rng(seed)
    shape = (5, 4) if grey else (5, 4, 3)
    feats = datasets.Features({"label": datasets.ClassLabel(names=["zero", "one", "two"]), "img": datasets.Image()})
    ref: dict[str, Any] = {}
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        labels = [i % 3 for i in range(n)]
        splits[split] = datasets.Dataset.from_dict({"label": labels, "img": imgs}, features=feats)
        ref[f"x_{split}"] = np.stack(imgs)[:, None] if grey else np.stack(imgs).transpose(0, 3, 1, 2)
        ref[f"y_{split}"] = labels
    return datasets.DatasetDict(splits), ref


@pytest.mark.parametrize("grey", [False, True])
def test_save_to_disk_folder(tmp_path: Path, grey: bool) -> None:
    # Prepare
    dd, ref = _dataset_dict(grey=grey)
    dd.save_to_disk(str(tmp_path / "saved"))
    # Execute: the image column found by its Image feature, the labels by their ClassLabel
    data = read_hf(str(tmp_path / "saved"), cache_dir=tmp_path / "cache")
    # Assert
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    np.testing.assert_array_equal(data.x_test, ref["x_test"])
    assert data.y_train.tolist() == ref["y_train"] and data.class_names == ["zero", "one", "two"]
    # Execute again: from the decode cache
    again = read_hf(str(tmp_path / "saved"), cache_dir=tmp_path / "cache")
    assert isinstance(again.x_train, np.memmap)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_hub_name_from_local_cache_offline(tmp_path: Path) -> None:
    # Prepare: lay out a hub data set's prepared cache as load_dataset leaves it
    # (<cache>/<user>___<name>/default/<version>/<hash>/<name>-<split>.arrow)
    dd, ref = _dataset_dict()
    for split, ds in dd.items():
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    cache = tmp_path / "hf_cache"
    datasets.load_dataset("parquet", data_files={s: str(tmp_path / f"{s}.parquet") for s in dd}, cache_dir=str(cache))
    (cache / "parquet").rename(cache / "fedcl-test___tiny")
    config = next(p for p in (cache / "fedcl-test___tiny").iterdir() if p.is_dir())
    config.rename(config.parent / "default")
    for arrow in (cache / "fedcl-test___tiny").rglob("parquet-*.arrow"):
        arrow.rename(arrow.with_name(arrow.name.replace("parquet-", "tiny-")))
    # Execute: a hub name, found in the cache without network
    data = read_hf("fedcl-test/tiny", hf_cache_dir=str(cache), cache_dir=tmp_path / "fedcl_cache")
    # Assert
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    np.testing.assert_array_equal(data.x_train, ref["x_train"])
    assert data.y_test.tolist() == ref["y_test"]


def test_not_cached_hub_name_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'fedcl-test/absent' is not in the local cache.*save_to_disk"):
        read_hf("fedcl-test/absent", hf_cache_dir=str(tmp_path / "empty"), cache_dir=tmp_path / "c")


def test_columns_splits_and_sizes(tmp_path: Path) -> None:
    # Prepare: named columns without feature types, a 'valid' split, one odd-sized image
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(3)]
    feats = datasets.Features({"picture": datasets.Image(), "y": datasets.Value("int64")})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"picture": imgs, "y": [0, 1, 1]}, features=feats),
        "valid": datasets.Dataset.from_dict({"picture": [np.zeros((4, 6, 3), np.uint8)], "y": [1]}, features=feats),
    })
    dd.save_to_disk(str(tmp_path / "d"))
    path = str(tmp_path / "d")
    # Execute / Assert
    with pytest.raises(DataError, match=r"splits \['train', 'valid'\], not 'test'"):
        read_hf(path, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="no ClassLabel column; set stream.hf_label_column"):
        read_hf(path, test_split="valid", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"valid row 0 is \(3, 4, 6\).*stream.image_size"):
        read_hf(path, test_split="valid", label_column="y", cache_dir=tmp_path / "c")
    data = read_hf(path, test_split="valid", label_column="y", size=(4, 4), cache_dir=tmp_path / "c")
    assert data.x_test.shape == (1, 3, 4, 4) and data.class_names is None and data.y_train.tolist() == [0, 1, 1]


def test_single_split_folder(tmp_path: Path) -> None:
    dd, _ = _dataset_dict()
    dd["train"].save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataError, match="holds one split; save a DatasetDict"):
        read_hf(str(tmp_path / "one"))


def test_image_that_does_not_decode_names_the_row(tmp_path: Path) -> None:
    # Prepare: the second train image is not an image file (bytes cut off after PNG's signature)
    good = np.zeros((4, 4, 3), np.uint8)
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {"img": [good, {"bytes": b"\x89PNG\r\n\x1a\n", "path": None}], "label": [0, 1]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=feats),
                               "test": datasets.Dataset.from_dict({"img": [good], "label": [1]}, features=feats)})
    dd.save_to_disk(str(tmp_path / "d"))
    # Execute / Assert
    with pytest.raises(DataError, match=r"d train row 1: the image does not decode"):
        read_hf(str(tmp_path / "d"), cache_dir=tmp_path / "c")
