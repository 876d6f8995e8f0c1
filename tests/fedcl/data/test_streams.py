"""Task streams: task splits, client shares, permutations, eval subsets and config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedcl.config import validate_section
from fedcl.config.schema import Stream as StreamConfig
from fedcl.data import build_stream, make_synthetic
from fedcl.errors import ConfigError
from tests.fedcl.data.configs import stream_raw

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _cfg(**over: Any) -> StreamConfig:
    cfg = stream_raw(
        "synthetic", num_tasks=3, partition="dirichlet", alpha=0.5,
        synthetic={"num_classes": 6, "image_shape": [1, 4, 4], "train_per_class": 40, "test_per_class": 20,
                   "noise": 0.5, "seed": 0},
    )
    cfg.update(over)
    return validate_section(StreamConfig, cfg, "stream")


def test_make_synthetic_shapes_and_determinism() -> None:
    # Execute
    a = make_synthetic(3, (1, 4, 4), 5, 2, 0.1, seed=0)
    b = make_synthetic(3, (1, 4, 4), 5, 2, 0.1, seed=0)
    # Assert
    assert a[0].shape == (15, 1, 4, 4) and a[0].dtype == np.float32
    assert a[1].dtype == np.int64 and a[3].tolist() == [0, 0, 1, 1, 2, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_class_incremental_tasks_disjoint_and_cover() -> None:
    # Execute
    stream = build_stream(_cfg(num_tasks=4), 3, seed=0)
    # Assert: 6 classes over 4 tasks, uneven chunks allowed
    classes = [t.classes for t in stream.tasks]
    flat = [c for cs in classes for c in cs]
    assert sorted(flat) == list(range(6)) and len(flat) == len(set(flat))
    assert [len(c) for c in classes] == [2, 2, 1, 1]
    assert not stream.multi_head and stream.num_heads == 1
    for t in stream.tasks:
        y_test = stream.eval_data(t.task_id)[1]
        assert set(y_test.tolist()) == set(t.classes)


def test_every_train_sample_used_once_across_clients() -> None:
    # Prepare
    stream = build_stream(_cfg(), 4, seed=1)
    for task in stream.tasks:
        # Execute
        shares = [stream.client_indices(task.task_id, c) for c in range(4)]
        # Assert
        joined = np.sort(np.concatenate(shares))
        np.testing.assert_array_equal(joined, np.sort(stream.task_indices(task.task_id, "train")))


def test_client_data_types_and_labels() -> None:
    # Prepare
    stream = build_stream(_cfg(partition="iid"), 2, seed=0)
    # Execute
    x, y = stream.client_data(1, 0)
    # Assert
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape[1:]) == stream.in_shape == (1, 4, 4)
    assert set(y.tolist()) <= set(stream.tasks[1].classes)


def test_task_incremental_multi_head() -> None:
    # Execute
    stream = build_stream(_cfg(scenario="task_incremental"), 2, seed=0)
    # Assert
    assert stream.multi_head and stream.num_heads == 3


def test_class_order_shuffle_seeded_and_list() -> None:
    # Execute
    a = build_stream(_cfg(class_order="shuffle"), 2, seed=0)
    b = build_stream(_cfg(class_order="shuffle"), 2, seed=0)
    c = build_stream(_cfg(class_order=[5, 4, 3, 2, 1, 0]), 2, seed=0)
    # Assert
    assert [t.classes for t in a.tasks] == [t.classes for t in b.tasks]
    assert [t.classes for t in c.tasks] == [[5, 4], [3, 2], [1, 0]]


def test_domain_permuted() -> None:
    # Prepare
    stream = build_stream(_cfg(scenario="domain_permuted", partition="iid"), 2, seed=0)
    base_x, base_y = stream.eval_data(0)
    # Execute
    perm_x, perm_y = stream.eval_data(1)
    # Assert
    assert stream.tasks[0].permutation is None
    perm = stream.tasks[1].permutation
    assert perm is not None and sorted(perm.tolist()) == list(range(16)) and not torch.equal(perm, torch.arange(16))
    assert all(t.classes == list(range(6)) for t in stream.tasks)
    assert torch.equal(perm_y, base_y)
    torch.testing.assert_close(perm_x.reshape(len(perm_x), -1), base_x.reshape(len(base_x), -1)[:, perm])


def test_permutations_depend_on_seed_only() -> None:
    # Execute
    a = build_stream(_cfg(scenario="domain_permuted", partition="iid"), 2, seed=0)
    b = build_stream(_cfg(scenario="domain_permuted", partition="shards"), 3, seed=0)
    c = build_stream(_cfg(scenario="domain_permuted", partition="iid"), 2, seed=1)
    # Assert
    pa, pb, pc = a.tasks[2].permutation, b.tasks[2].permutation, c.tasks[2].permutation
    assert pa is not None and pb is not None and pc is not None
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_partition_deterministic_by_seed() -> None:
    # Execute
    a = build_stream(_cfg(), 3, seed=5)
    b = build_stream(_cfg(), 3, seed=5)
    c = build_stream(_cfg(), 3, seed=6)
    # Assert
    assert a is b  # cached per process
    assert np.array_equal(a.client_indices(0, 0), build_stream(_cfg(), 3, seed=5).client_indices(0, 0))
    assert not all(np.array_equal(a.client_indices(0, k), c.client_indices(0, k)) for k in range(3))


def test_eval_subset_fixed_across_calls() -> None:
    # Prepare
    stream = build_stream(_cfg(), 2, seed=0)
    # Execute
    x1, y1 = stream.eval_data(0, subset_size=10)
    x2, y2 = stream.eval_data(0, subset_size=10)
    full_x, _ = stream.eval_data(0, subset_size=None)
    # Assert
    assert len(y1) == 10 and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(full_x) == 40


def test_describe_counts() -> None:
    # Execute
    info = build_stream(_cfg(), 4, seed=0).describe()
    # Assert
    assert info["num_tasks"] == 3
    assert [sum(t["client_samples"]) for t in info["tasks"]] == [80, 80, 80]


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"num_tasks": 7}, "stream.num_tasks"),
        ({"num_tasks": 0}, "stream.num_tasks"),
        ({"scenario": "rotated"}, "stream.scenario"),
        ({"dataset": "cifar"}, "stream.dataset"),
        ({"class_order": [0, 1, 2, 3, 4, 4]}, "stream.class_order"),
        ({"alpha": 0.0}, "stream.alpha"),
        ({"partition": "zipf"}, "stream.partition"),
        ({"dataset": "mnist_format", "data_dir": None}, "stream.data_dir"),
    ],
)
def test_config_errors(over: dict[str, Any], key: str) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_stream(_cfg(**over), 2, seed=0)


def test_more_clients_than_samples() -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="federation.num_clients"):
        build_stream(_cfg(partition="iid"), 81, seed=0)


def test_real_fashion_mnist_stream() -> None:
    # Prepare
    if not FMNIST_DIR.is_dir():
        pytest.skip(f"{FMNIST_DIR} not installed (apt-get install dataset-fashion-mnist)")
    cfg = _cfg(dataset="fashion_mnist", data_dir=str(FMNIST_DIR), num_tasks=5, synthetic=None)
    # Execute
    stream = build_stream(cfg, 10, seed=0)
    x, y = stream.client_data(0, 0)
    # Assert
    assert stream.in_shape == (1, 28, 28) and stream.num_classes == 10
    assert len(stream.task_indices(0, "train")) == 12000
    assert x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}


def test_uint8_stats_in_chunks_equal_the_float_mean_and_std(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: pixels over several chunks, the last one partial
    from fedcl.data import base

    monkeypatch.setattr(base, "_STATS_CHUNK", 1000)
    x = np.random.default_rng(0).integers(0, 256, size=(7, 30, 17), dtype=np.uint8)
    # Execute
    mean, std = base._uint8_stats(x)
    # Assert: every pixel counted once
    ref = x.astype(np.float64) / 255.0
    assert mean == pytest.approx(ref.mean(), abs=1e-12) and std == pytest.approx(ref.std(), abs=1e-12)
