"""flwr-datasets partitioners as a stream scheme, and parity with fedcl's own iid / shards / dirichlet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedcl.config.schema import FLWR_PARTITIONERS
from fedcl.data import build_stream, partition_labels
from fedcl.errors import ConfigError
from tests.fedcl.data.configs import stream_config

pytest.importorskip("flwr_datasets")
from fedcl.data.flwr_partition import flwr_partition  # noqa: E402


def _check_disjoint(parts: list[np.ndarray], n: int, all_used: bool = True) -> None:
    flat = np.concatenate(parts)
    assert len(flat) == len(np.unique(flat)) and flat.min() >= 0 and flat.max() < n
    if all_used:
        assert len(flat) == n


def test_iid_parity_sizes_and_randomness() -> None:
    # Prepare: labels sorted, so a contiguous unshuffled split would be badly non-IID
    labels = np.repeat(np.arange(4), 25)
    # Execute
    ours = partition_labels(labels, 6, "iid", seed=3)
    theirs = flwr_partition(labels, 6, "flwr_iid", None, seed=3)
    # Assert: the same sizes (array_split == contiguous shards), disjoint, all samples; both mix labels
    assert [len(p) for p in ours] == [len(p) for p in theirs] == [17, 17, 17, 17, 16, 16]
    _check_disjoint(ours, 100)
    _check_disjoint(theirs, 100)
    assert all(len(np.unique(labels[p])) >= 3 for p in theirs)
    again = flwr_partition(labels, 6, "flwr_iid", None, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(theirs, again, strict=True))


def test_shards_parity() -> None:
    # Prepare: 10 classes x 40 samples, 10 clients x 2 shards of 20: every shard holds one class
    labels = np.repeat(np.arange(10), 40)
    # Execute
    ours = partition_labels(labels, 10, "shards", shards_per_client=2, seed=0)
    theirs = flwr_partition(labels, 10, "flwr_shard", {"num_shards_per_partition": 2}, seed=0)
    # Assert: 40 samples and at most 2 classes per client in both; all samples used
    for parts in (ours, theirs):
        _check_disjoint(parts, 400)
        assert [len(p) for p in parts] == [40] * 10
        assert max(len(np.unique(labels[p])) for p in parts) <= 2


def _herfindahl(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean over classes of sum_k p_k^2, p_k = share of the class held by client k."""
    counts = np.array([[np.sum(labels[p] == c) for p in parts] for c in np.unique(labels)], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    return float((shares**2).sum(axis=1).mean())


@pytest.mark.parametrize("alpha", [0.3, 5.0])
def test_dirichlet_parity_in_distribution(alpha: float) -> None:
    # Prepare: per class, both draw client shares ~ Dir(alpha); E[sum p^2] = (alpha + 1) / (K alpha + 1)
    labels = np.repeat(np.arange(10), 200)
    k = 5
    expected = (alpha + 1) / (k * alpha + 1)
    # Execute: 10 seeds x 10 classes = 100 Dirichlet draws each
    ours = [_herfindahl(partition_labels(labels, k, "dirichlet", alpha=alpha, min_samples=0, seed=s), labels)
            for s in range(10)]
    spec: dict[str, Any] = {"alpha": alpha, "min_partition_size": 0}
    theirs = [_herfindahl(flwr_partition(labels, k, "flwr_dirichlet", spec, seed=s), labels) for s in range(10)]
    # Assert: both match the Dirichlet's moment (standard error ~0.02 here)
    assert np.mean(ours) == pytest.approx(expected, abs=0.06)
    assert np.mean(theirs) == pytest.approx(expected, abs=0.06)
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.08)


def test_bad_specs() -> None:
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ConfigError, match=r"\['alpha'\]") as info:
        flwr_partition(labels, 2, "flwr_dirichlet", None, seed=0)
    assert info.value.key == "stream.flwr_partitioner"
    with pytest.raises(ConfigError, match="unknown argument of PathologicalPartitioner") as info:
        flwr_partition(labels, 2, "flwr_pathological", {"num_classes": 2}, seed=0)
    assert info.value.key == "stream.flwr_partitioner.num_classes"
    with pytest.raises(ConfigError, match="ShardPartitioner rejected it"):
        flwr_partition(labels, 20, "flwr_shard", {"num_shards_per_partition": 2}, seed=0)


def test_every_flwr_partition_name_splits_a_task() -> None:
    # Prepare: each name with the arguments it needs
    labels = np.repeat(np.arange(4), 30)
    needs = {"flwr_dirichlet": {"alpha": 1.0, "min_partition_size": 0}, "flwr_shard": {"num_shards_per_partition": 2},
             "flwr_pathological": {"num_classes_per_partition": 2}}
    for name in FLWR_PARTITIONERS:
        # Execute
        parts = flwr_partition(labels, 3, name, needs.get(name), seed=1)
        # Assert: disjoint, within range, three clients
        assert len(parts) == 3
        _check_disjoint(parts, 120, all_used=name != "flwr_shard")


def test_stream_with_flwr_partition() -> None:
    # Prepare
    cfg = stream_config("synthetic", partition="flwr_dirichlet", flwr_partitioner={"alpha": 0.5,
                                                                                      "min_partition_size": 1})
    # Execute
    stream = build_stream(cfg, 3, seed=0)
    again = build_stream(cfg, 3, seed=1)
    # Assert: every task's train split is shared over the clients, and the run seed moves the split
    for t in range(2):
        parts = [stream.client_indices(t, c) for c in range(3)]
        assert sorted(np.concatenate(parts).tolist()) == stream.task_indices(t, "train").tolist()
    assert any(not np.array_equal(stream.client_indices(0, c), again.client_indices(0, c)) for c in range(3))
