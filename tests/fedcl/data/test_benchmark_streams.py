"""The benchmark streams on generated files: tasks, per-channel / per-source normalisation, client-only augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from fedcl.data import build_stream
from fedcl.errors import ConfigError, DataError
from tests.fedcl.data.formats import write_cifar, write_five_datasets, write_idx, write_mini_imagenet_npy

CONF = Path(__file__).resolve().parents[3] / "simulations" / "conf" / "stream"


def _stream_cfg(name: str, **over: Any) -> dict[str, Any]:
    """A stream YAML as Hydra composes it (its defaults merged), with overrides."""
    data = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg: dict[str, Any] = {}
    for parent in data.pop("defaults", []):
        if parent != "_self_":
            cfg.update(_stream_cfg(parent))
    cfg.update(data)
    cfg.update(over)
    return cfg


def test_split_cifar100_stream(tmp_path: Path) -> None:
    # Prepare: 400 generated CIFAR-100 images
    ref = write_cifar(tmp_path, "cifar100", n_train=400, n_test=200)
    cfg = _stream_cfg("split_cifar100", data_dir=str(tmp_path), augment=None)
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: FOT's 10 tasks of 10 consecutive classes, task-incremental (one head per task)
    assert [t.classes for t in stream.tasks] == [list(range(10 * t, 10 * t + 10)) for t in range(10)]
    assert stream.multi_head and stream.num_heads == 10 and stream.in_shape == (3, 32, 32)
    assert stream.num_classes == 100 and stream.class_names == ref["names"]
    # FOT's per-channel normalisation, exactly
    x, y = stream.client_data(3, 1)
    idx = stream.client_indices(3, 1)
    mean = torch.tensor(cfg["normalize"]["mean"], dtype=torch.float32).reshape(3, 1, 1)
    std = torch.tensor(cfg["normalize"]["std"], dtype=torch.float32).reshape(3, 1, 1)
    want = (torch.from_numpy(ref["x_train"][idx]).float() / 255.0 - mean) / std
    assert torch.equal(x, want) and y.tolist() == ref["y_train"][idx].tolist()


def test_class_incremental_variant_and_computed_stats(tmp_path: Path) -> None:
    # Prepare
    write_cifar(tmp_path, "cifar10", n_train=60, n_test=20)
    cfg = _stream_cfg("split_cifar10", data_dir=str(tmp_path), normalize=None, augment=None)
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: 5 tasks of 2; statistics measured per channel on the train split -> mean 0, std 1 over it
    assert cfg["scenario"] == "class_incremental" and not stream.multi_head
    assert [len(t.classes) for t in stream.tasks] == [2] * 5
    xs = torch.cat([stream.client_data(t, c)[0] for t in range(5) for c in range(2)])
    assert torch.allclose(xs.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xs.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_five_datasets_normalised_per_source(tmp_path: Path) -> None:
    # Prepare
    ref = write_five_datasets(tmp_path)
    cfg = _stream_cfg("five_datasets", data_dir=str(tmp_path))
    # Execute
    stream = build_stream(cfg, 2, seed=0)
    # Assert: one task per source, in GPM / FOT order; task 1 (MNIST) uses MNIST's statistics
    assert [t.classes for t in stream.tasks] == [list(range(10 * s, 10 * s + 10)) for s in range(5)]
    x, y = stream.eval_data(1)
    m, s = cfg["normalize"]["mnist"]["mean"][0], cfg["normalize"]["mnist"]["std"][0]
    img = np.pad(ref["mnist"]["x_test"], ((0, 0), (2, 2), (2, 2)))
    want = (torch.from_numpy(img).float() / 255.0 - m) / s
    assert torch.allclose(x[:, 0], want, atol=1e-6) and torch.equal(x[:, 0], x[:, 2])
    assert (y == 10 + torch.from_numpy(ref["mnist"]["y_test"])).all()
    # CIFAR-10 (task 0) uses its own three channels' statistics
    x0, _ = stream.eval_data(0)
    c_mean = torch.tensor(cfg["normalize"]["cifar10"]["mean"]).reshape(3, 1, 1)
    c_std = torch.tensor(cfg["normalize"]["cifar10"]["std"]).reshape(3, 1, 1)
    assert torch.allclose(x0, (torch.from_numpy(ref["cifar10"]["x_test"]).float() / 255 - c_mean) / c_std, atol=1e-5)


def test_mini_imagenet_augmentation_client_only_and_seeded(tmp_path: Path) -> None:
    # Prepare: FOT's mini-ImageNet set-up (crop 84 pad 4, flip) on 8 generated images per task
    write_mini_imagenet_npy(tmp_path, n_train=80, n_test=20)
    cfg = _stream_cfg("mini_imagenet", data_dir=str(tmp_path), num_tasks=2, class_order="shuffle")
    stream = build_stream(cfg, 2, seed=0)
    # Execute
    plain, _ = stream.client_data(0, 1)
    r3, y3 = stream.client_data(0, 1, server_round=3)
    r3_again, _ = stream.client_data(0, 1, server_round=3)
    r4, _ = stream.client_data(0, 1, server_round=4)
    other_client, _ = stream.client_data(0, 0, server_round=3)
    # Assert: same (seed, client, round) -> same draw; another round -> another draw; labels untouched
    assert torch.equal(r3, r3_again) and not torch.equal(r3, r4) and not torch.equal(r3, plain)
    assert y3.tolist() == stream.client_labels(0, 1).tolist()
    assert other_client.shape[0] == len(stream.client_indices(0, 0))
    # padding is black before normalisation: -mean/std in the normalised image
    black = -torch.tensor(cfg["normalize"]["mean"]) / torch.tensor(cfg["normalize"]["std"])
    assert any(torch.allclose(r3[i, :, 0, 0], black, atol=1e-5) for i in range(len(r3)))
    # evaluation and round-less calls (GPSE) are never augmented: exactly the normalised base images
    mean = torch.tensor(cfg["normalize"]["mean"]).reshape(3, 1, 1)
    std = torch.tensor(cfg["normalize"]["std"]).reshape(3, 1, 1)
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
    cfg = _stream_cfg("split_fmnist", dataset="mnist_format", data_dir=str(tmp_path), partition="iid")
    from fedcl.data.streams import _uint8_stats

    stream = build_stream(cfg, 2, seed=0)
    # Execute
    x, _ = stream.client_data(0, 0)
    # Assert: exactly (x / 255 - mean) / std with Python-float statistics over all pixels, as before
    base_x = stream._base.x_train[stream.client_indices(0, 0)]
    mean, std = _uint8_stats(stream._base.x_train)
    want = ((torch.from_numpy(base_x).float() / 255.0 - mean) / std).reshape(x.shape)
    assert torch.equal(x, want)


@pytest.mark.parametrize(
    ("over", "error", "match"),
    [
        ({"normalize": {"mean": [0.5, 0.5], "std": [0.2, 0.2]}}, ConfigError, r"1 or 3 values"),
        ({"normalize": {"mean": [0.5], "std": [0.0]}}, ConfigError, r"values > 0"),
        ({"normalize": [0.5]}, ConfigError, r"stream.normalize"),
        ({"dataset": "cifar1000"}, ConfigError, r"stream.dataset"),
        ({"data_dir": None}, ConfigError, r"stream.data_dir"),
    ],
)
def test_stream_config_errors(tmp_path: Path, over: dict, error: type, match: str) -> None:
    write_cifar(tmp_path, "cifar100", n_train=200, n_test=50)
    with pytest.raises(error, match=match):
        build_stream(_stream_cfg("split_cifar100", **{"data_dir": str(tmp_path), **over}), 2, seed=0)


def test_missing_data_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CIFAR-100 found"):
        build_stream(_stream_cfg("split_cifar100", data_dir=str(tmp_path / "none")), 2, seed=0)
