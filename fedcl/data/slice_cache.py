"""A per-process LRU cache of materialised data slices, bounded in bytes.

A client's train slice is normalised from the uint8 base images on every
round it plays, and the server re-normalises every task's full test split at
each task end. The profile of the default experiment put both at ~5% of the
run (simulations/benchmarks/results/profile.md). The materialisation is a pure
function of (task, client / subset), so each process (server, every Ray actor)
keeps the results up to a memory budget and evicts the least recently used.

Callers receive the cached tensors themselves: they must not modify them in
place (every user in fedcl indexes or copies them first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

from fedcl.errors import ConfigError

Pair = tuple[torch.Tensor, torch.Tensor]
DEFAULT_BUDGET_MB = 256


class SliceCache:
    """Least-recently-used ``key -> (x, y)`` cache holding at most ``budget_mb`` MiB.

    Parameters
    ----------
    budget_mb : int
        Memory budget in MiB; 0 disables the cache. A single entry larger than
        the budget is returned but not kept.
    """

    def __init__(self, budget_mb: int = DEFAULT_BUDGET_MB) -> None:
        self.set_budget(budget_mb)
        self._items: OrderedDict[Hashable, Pair] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def set_budget(self, budget_mb: int) -> None:
        """Change the budget (``backend.data_cache_mb``); evicts down to it."""
        if isinstance(budget_mb, bool) or not isinstance(budget_mb, int) or budget_mb < 0:
            raise ConfigError("backend.data_cache_mb", budget_mb, "an integer >= 0 (MiB per process; 0 = no cache)")
        self.budget = budget_mb * 2**20
        if hasattr(self, "_items"):
            self._evict()

    @staticmethod
    def _size(pair: Pair) -> int:
        return sum(t.element_size() * t.nelement() for t in pair)

    def _evict(self) -> None:
        while self._items and self.nbytes > self.budget:
            _, old = self._items.popitem(last=False)
            self.nbytes -= self._size(old)

    def get(self, key: Hashable, make: Callable[[], Pair]) -> Pair:
        """The cached pair for ``key``, computed by ``make()`` on a miss."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return hit
        self.misses += 1
        pair = make()
        size = self._size(pair)
        if size <= self.budget:
            self._items[key] = pair
            self.nbytes += size
            self._evict()
        return pair

    def clear(self) -> None:
        """Drop every entry."""
        self._items.clear()
        self.nbytes = 0
