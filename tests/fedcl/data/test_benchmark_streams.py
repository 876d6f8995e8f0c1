"""The benchmark streams on generated files: tasks, per-channel / per-source normalisation, client-only augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedcl.data import build_stream
from fedcl.data.base import _uint8_stats
from fedcl.errors import ConfigError, DataError
from tests.fedcl.data.configs import stream_config
from tests.fedcl.data.formats import (
    write_cifar,
    write_five_datasets,
    write_idx,
    write_mini_imagenet_npy,
    write_png,
    write_tiny_imagenet,
)


def test_split_cifar100_stream(tmp_path: Path) -> None:
    # Prepare: 400 generated CIFAR-100 images
    ref = write_cifar(tmp_path, "cifar100", n_train=400, n_test=200)
    cfg = stream_config("split_cifar100", data_dir=str(tmp_path), augment=None)
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: FOT's 10 tasks of 10 consecutive classes, task-incremental (one head per task)
    assert [t.classes for t in stream.tasks] == [list(range(10 * t, 10 * t + 10)) for t in range(10)]
    assert stream.multi_head and stream.num_heads == 10 and stream.in_shape == (3, 32, 32)
    assert stream.num_classes == 100 and stream.class_names == ref["names"]
    # FOT's per-channel normalisation, exactly
    x, y = stream.client_data(3, 1)
    idx = stream.client_indices(3, 1)
    assert cfg.normalize is not None
    mean = torch.tensor(cfg.normalize.mean, dtype=torch.float32).reshape(3, 1, 1)
    std = torch.tensor(cfg.normalize.std, dtype=torch.float32).reshape(3, 1, 1)
    want = (torch.from_numpy(ref["x_train"][idx]).float() / 255.0 - mean) / std
    assert torch.equal(x, want) and y.tolist() == ref["y_train"][idx].tolist()


def test_class_incremental_variant_and_computed_stats(tmp_path: Path) -> None:
    # Prepare
    write_cifar(tmp_path, "cifar10", n_train=60, n_test=20)
    cfg = stream_config("split_cifar10", data_dir=str(tmp_path), normalize=None, augment=None)
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: 5 tasks of 2; statistics measured per channel on the train split -> mean 0, std 1 over it
    assert cfg.scenario == "class_incremental" and not stream.multi_head
    assert [len(t.classes) for t in stream.tasks] == [2] * 5
    xs = torch.cat([stream.client_data(t, c)[0] for t in range(5) for c in range(2)])
    assert torch.allclose(xs.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xs.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_five_datasets_normalised_per_source(tmp_path: Path) -> None:
    # Prepare
    ref = write_five_datasets(tmp_path)
    cfg = stream_config("five_datasets", data_dir=str(tmp_path))
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: one task per source, in GPM / FOT order; task 1 (MNIST) uses MNIST's statistics
    assert [t.classes for t in stream.tasks] == [list(range(10 * s, 10 * s + 10)) for s in range(5)]
    x, y = stream.eval_data(1)
    assert cfg.sources is not None and cfg.sources.mnist.normalize is not None
    m, s = cfg.sources.mnist.normalize.mean[0], cfg.sources.mnist.normalize.std[0]
    img = np.pad(ref["mnist"]["x_test"], ((0, 0), (2, 2), (2, 2)))
    want = (torch.from_numpy(img).float() / 255.0 - m) / s
    assert torch.allclose(x[:, 0], want, atol=1e-6) and torch.equal(x[:, 0], x[:, 2])
    assert (y == 10 + torch.from_numpy(ref["mnist"]["y_test"])).all()
    # CIFAR-10 (task 0) uses its own three channels' statistics
    x0, _ = stream.eval_data(0)
    c_norm = cfg.sources.cifar10.normalize
    assert c_norm is not None
    c_mean = torch.tensor(c_norm.mean).reshape(3, 1, 1)
    c_std = torch.tensor(c_norm.std).reshape(3, 1, 1)
    assert torch.allclose(x0, (torch.from_numpy(ref["cifar10"]["x_test"]).float() / 255 - c_mean) / c_std, atol=1e-5)


def test_mini_imagenet_augmentation_client_only_and_seeded(tmp_path: Path) -> None:
    # Prepare: FOT's mini-ImageNet set-up (crop 84 pad 4, flip) on 8 generated images per task
    write_mini_imagenet_npy(tmp_path, n_train=80, n_test=20)
    cfg = stream_config("mini_imagenet", data_dir=str(tmp_path), num_tasks=2, class_order="shuffle")
    stream = build_stream(cfg, 2, seed=0)
    # Execute
    plain, _ = stream.client_data(0, 1)
    r3, y3 = stream.train_data(0, 1, server_round=3)
    r3_again, _ = stream.train_data(0, 1, server_round=3)
    r4, _ = stream.train_data(0, 1, server_round=4)
    other_client, _ = stream.train_data(0, 0, server_round=3)
    # Assert: same (seed, client, round) -> same draw; another round -> another draw; labels untouched
    assert torch.equal(r3, r3_again) and not torch.equal(r3, r4) and not torch.equal(r3, plain)
    assert y3.tolist() == stream.client_labels(0, 1).tolist()
    assert other_client.shape[0] == len(stream.client_indices(0, 0))
    # padding is black before normalisation: -mean/std in the normalised image
    assert cfg.normalize is not None
    black = -torch.tensor(cfg.normalize.mean) / torch.tensor(cfg.normalize.std)
    assert any(torch.allclose(r3[i, :, 0, 0], black, atol=1e-5) for i in range(len(r3)))
    # evaluation and round-less calls (GPSE) are never augmented: exactly the normalised base images
    mean = torch.tensor(cfg.normalize.mean).reshape(3, 1, 1)
    std = torch.tensor(cfg.normalize.std).reshape(3, 1, 1)
    test_idx = stream.eval_indices(0)
    want = (torch.from_numpy(np.asarray(stream._base.x_test[test_idx])).float() / 255.0 - mean) / std
    assert torch.equal(stream.eval_data(0)[0], want)
    train_want = (torch.from_numpy(np.asarray(stream._base.x_train[stream.client_indices(0, 1)])).float() / 255.0
                  - mean) / std
    assert torch.equal(plain, train_want)
    assert stream.describe()["augment"] == {"crop_padding": 4, "hflip": True}


def test_idx_streams_keep_their_scalar_arithmetic(tmp_path: Path) -> None:
    # Prepare: an MNIST-format folder; the legacy one-statistic normalisation
    write_idx(tmp_path, n_train=40)
    cfg = stream_config("split_fmnist", dataset="mnist_format", data_dir=str(tmp_path), partition="iid")
    stream = build_stream(cfg, 2, seed=0)
    # Execute
    x, _ = stream.client_data(0, 0)
    # Assert: exactly (x / 255 - mean) / std with Python-float statistics over all pixels, as before
    base_x = stream._base.x_train[stream.client_indices(0, 0)]
    mean, std = _uint8_stats(stream._base.x_train)
    want = ((torch.from_numpy(base_x).float() / 255.0 - mean) / std).reshape(x.shape)
    assert torch.equal(x, want)


@pytest.mark.parametrize(
    ("over", "key", "match"),
    [
        ({"normalize": {"mean": [0.5, 0.5], "std": [0.2, 0.2]}}, "stream.normalize.mean", r"1 or 3 values"),
        ({"normalize": {"mean": [0.5], "std": [0.0]}}, "stream.normalize.std", r"numbers > 0"),
        ({"normalize": {"mean": [0.5], "std": [0.2, 0.2]}}, "stream.normalize.std", r"as many values as mean"),
        ({"normalize": [0.5]}, "stream.normalize", r"mean: \[...\], std"),
        ({"normalize": {"mean": [0.5], "sd": [0.2]}}, "stream.normalize.std", r"required"),
        ({"dataset": "cifar1000"}, "stream.dataset", r"cifar100"),
        ({"data_dir": None}, "stream.data_dir", r"folder holding cifar100"),
        ({"augment": {"crop_padding": -1, "hflip": True}}, "stream.augment.crop_padding", r">= 0"),
        ({"augment": {"crop_padding": 4, "hflip": "yes"}}, "stream.augment.hflip", r"true or false"),
        ({"augment": {"crop_padding": 4, "hflip": True, "rotate": 3}}, "stream.augment.rotate", r"unknown key"),
        ({"augment": {"crop_padding": 4, "hflip": True}, "scenario": "domain_permuted"}, "stream.augment",
         r"domain_permuted"),
        ({"image_size": [32, 32]}, "stream.image_size", r"image_folder"),
        ({"image_size": [32]}, "stream.image_size", r"\[height, width\]"),
        ({"sources": {}}, "stream.sources.cifar10", r"required"),
        ({"partition": "flwr_dirichlet", "flwr_partitioner": {"alpha": 0.5, "seed": 3}},
         "stream.flwr_partitioner.seed", r"fedcl sets"),
        ({"partition": "flwr_dirichlet", "flwr_partitioner": {"alpah": 0.5}}, "stream.flwr_partitioner.alpah",
         r"unknown argument of DirichletPartitioner"),
        ({"partition": "flwr_dirichlet", "flwr_partitioner": None}, "stream.flwr_partitioner", r"\['alpha'\]"),
        ({"partition": "flwr_nonsense"}, "stream.partition", r"flwr_dirichlet"),
    ],
)
def test_stream_config_errors(over: dict, key: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        stream_config("split_cifar100", **{"data_dir": "/data/cifar100", **over})
    assert info.value.key == key


@pytest.mark.parametrize(
    ("option", "over", "key", "match"),
    [
        ("five_datasets", {"normalize": {"mean": [0.5], "std": [0.2]}}, "stream.normalize", r"sources.<name>"),
        ("five_datasets", {"sources": {"cifar10": {"data_dir": None, "normalize": None}}},
         "stream.sources.mnist", r"required"),
        ("hf", {"hf_path": None}, "stream.hf_path", r"save_to_disk"),
        ("hf", {"hf_train_split": ""}, "stream.hf_train_split", r"split name"),
        ("split_fmnist", {"sources": {k: {"data_dir": None, "normalize": None} for k in
                                       ("cifar10", "mnist", "svhn", "fashion_mnist", "notmnist")}},
         "stream.sources", r"five_datasets"),
        ("split_fmnist", {"data_dir": None}, "stream.data_dir", r"IDX"),
        ("split_fmnist", {"normalize": {"mean": [0.5, 0.5, 0.5], "std": [1, 1, 1]}}, "stream.normalize.mean",
         r"1 or 1 values"),
    ],
)
def test_stream_config_errors_of_other_streams(option: str, over: dict, key: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        stream_config(option, **over)
    assert info.value.key == key


def test_sources_normalisation_channels_are_checked() -> None:
    five = stream_config("five_datasets").sources
    assert five is not None
    sources = five.model_dump()
    sources["svhn"]["normalize"] = {"mean": [0.4, 0.4], "std": [0.2, 0.2]}
    with pytest.raises(ConfigError, match="1 or 3 values") as info:
        stream_config("five_datasets", sources=sources)
    assert info.value.key == "stream.sources.svhn.normalize.mean"


def test_missing_data_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CIFAR-100 found"):
        build_stream(stream_config("split_cifar100", data_dir=str(tmp_path / "none")), 2, seed=0)


def test_tiny_imagenet_stream(tmp_path: Path) -> None:
    # Prepare: a tiny-imagenet-200 tree of 3 classes (flat colours, so JPEG keeps them exactly)
    ref = write_tiny_imagenet(tmp_path, per_class=4, val=6)
    cfg = stream_config("tiny_imagenet", data_dir=str(ref["folder"]), num_tasks=3, cache_dir=str(tmp_path / "c"))
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: one class per task in wnid order, 64 x 64 RGB; val (grey JPEGs) is the test split, as 3 channels
    assert [t.classes for t in stream.tasks] == [[0], [1], [2]] and not stream.multi_head
    assert stream.in_shape == (3, 64, 64) and stream.augment == {"crop_padding": 4, "hflip": True}
    x, y = stream.eval_data(1)
    assert y.tolist() == [1] * ref["val_labels"].count(1)
    raw = np.asarray(stream._base.x_test[stream.eval_indices(1)])
    assert all((img == img[0, 0, 0]).all() for img in raw)  # a grey image repeated over the channels
    assert sorted(int(img[0, 0, 0]) for img in raw) == sorted(
        int(v[0, 0]) for v, lab in zip(ref["val_imgs"], ref["val_labels"], strict=True) if lab == 1)


def test_image_folder_stream_resized(tmp_path: Path) -> None:
    # Prepare: train/<class>/ and val/<class>/ PNGs of two sizes, resized by stream.image_size
    rng = np.random.default_rng(0)
    for split, per in (("train", 4), ("val", 2)):
        for cls in ("b", "a", "d", "c"):
            for i in range(per):
                write_png(tmp_path / split / cls / f"{i}.png", rng.integers(0, 256, (5 + i % 2, 7, 3), dtype=np.uint8))
    cfg = stream_config("image_folder", data_dir=str(tmp_path), num_tasks=2, image_size=[4, 6])
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: labels are the sorted folder names; every image 4 x 6
    assert stream.class_names == ["a", "b", "c", "d"] and [t.classes for t in stream.tasks] == [[0, 1], [2, 3]]
    assert stream.in_shape == (3, 4, 6)
    x, y = stream.eval_data(1)
    assert x.shape == (4, 3, 4, 6) and sorted(y.tolist()) == [2, 2, 3, 3]


def test_image_folder_stream_of_mixed_sizes_needs_image_size(tmp_path: Path) -> None:
    for split in ("train", "val"):
        write_png(tmp_path / split / "a" / "0.png", np.zeros((5, 7, 3), np.uint8))
        write_png(tmp_path / split / "a" / "1.png", np.zeros((6, 7, 3), np.uint8))
    with pytest.raises(DataError, match=r"1\.png is 6 x 7 .*stream\.image_size"):
        build_stream(stream_config("image_folder", data_dir=str(tmp_path), num_tasks=1), 1, seed=0)


def test_hf_stream_from_a_saved_folder(tmp_path: Path) -> None:
    # Prepare: a DatasetDict of 6 classes of 5 x 4 RGB images written by save_to_disk
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    feats = datasets.Features({"img": datasets.Image(), "fine": datasets.ClassLabel(names=list("uvwxyz"))})
    ref = {}
    splits = {}
    for split, n in (("train", 24), ("test", 12)):
        imgs = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(n)]
        labels = [i % 6 for i in range(n)]
        splits[split] = datasets.Dataset.from_dict({"img": imgs, "fine": labels}, features=feats)
        ref[split] = (np.stack(imgs).transpose(0, 3, 1, 2), np.array(labels))
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    cfg = stream_config("hf", hf_path=str(tmp_path / "saved"), num_tasks=3, cache_dir=str(tmp_path / "cache"),
                        normalize={"mean": [0.5], "std": [0.25]})
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: the ClassLabel's names, 3 tasks of 2 classes, images exact up to the configured normalisation
    assert stream.class_names == list("uvwxyz") and [t.classes for t in stream.tasks] == [[0, 1], [2, 3], [4, 5]]
    x, y = stream.eval_data(2)
    keep = np.isin(ref["test"][1], [4, 5])
    want = (torch.from_numpy(ref["test"][0][keep]).float() / 255.0 - 0.5) / 0.25
    assert torch.equal(x, want) and y.tolist() == ref["test"][1][keep].tolist()


def test_stream_rules_hold_for_a_whole_config_and_a_lone_section() -> None:
    # the rules among stream keys run in the root validator (compose) and in build_stream (a section alone)
    from fedcl.config import compose, validate_section
    from fedcl.config.schema import Stream as StreamConfig
    from tests.fedcl.data.configs import stream_raw

    with pytest.raises(ConfigError, match="save_to_disk") as info:
        compose(["stream=hf", "stream.hf_path=null"])
    assert info.value.key == "stream.hf_path"
    lone = validate_section(StreamConfig, stream_raw("split_cifar10", data_dir="/x", image_size=[8, 8]), "stream")
    with pytest.raises(ConfigError, match="image_folder") as info:
        build_stream(lone, 2, seed=0)
    assert info.value.key == "stream.image_size"
