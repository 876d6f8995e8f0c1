"""SliceCache: LRU within a byte budget, and a cached stream gives the same data as an uncached one."""

from __future__ import annotations

import pytest
import torch

from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.data.slice_cache import SliceCache
from fedcl.errors import ConfigError
from tests.conftest import synthetic_overrides


def pair(mb: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(mb * 2**20 / 4)
    return torch.zeros(n), torch.zeros(0, dtype=torch.int64)


def test_evicts_least_recently_used_beyond_budget() -> None:
    # Prepare: 2 MiB budget, three 0.9 MiB entries
    cache = SliceCache(budget_mb=2)
    calls: list[str] = []

    def make(key: str) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(key)
        return pair(0.9)

    # Execute: a, b, touch a, c (evicts b), then a and b again
    for key in ("a", "b", "a", "c", "a", "b"):
        cache.get(key, lambda key=key: make(key))
    # Assert
    assert calls == ["a", "b", "c", "b"]
    assert cache.nbytes <= 2 * 2**20
    assert cache.hits == 2


def test_zero_budget_keeps_nothing_and_bad_budget_is_a_config_error() -> None:
    cache = SliceCache(budget_mb=0)
    cache.get("a", lambda: pair(0.1))
    cache.get("a", lambda: pair(0.1))
    assert cache.misses == 2 and cache.nbytes == 0
    with pytest.raises(ConfigError, match="backend.data_cache_mb"):
        cache.set_budget(-1)


def test_cached_stream_slices_equal_fresh_materialisation() -> None:
    # Prepare
    cfg = compose(synthetic_overrides())
    stream = build_stream(cfg.stream, 3, 0)
    # Execute: first call materialises and caches, the second is a hit
    x1, y1 = stream.client_data(1, 2)
    x2, y2 = stream.client_data(1, 2)
    idx = stream.client_indices(1, 2)
    fresh_x, fresh_y = stream._materialise(stream._base.x_train[idx], stream._base.y_train[idx], 1)
    ex1, _ = stream.eval_data(0, 50)
    ex2, _ = stream.eval_data(0, 50)
    # Assert
    assert torch.equal(x1, fresh_x) and torch.equal(y1, fresh_y)
    assert x2 is x1 and y2 is y1 and ex2 is ex1
    assert stream.cache.hits >= 2
