"""The one in-process cache: bounded by entries, by weight and by age.

Invariant: a cache never holds more than ``max_entries`` entries nor more
than ``max_weight`` (in whatever unit ``weigh`` returns, bytes by
convention), and never answers with an entry older than ``max_age_s``; the
least recently used entries go first. Every per-process cache of arwx (runs,
API keys) is one of these, so memory does not grow with the number of
distinct things looked up. One event loop: no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MISSING = object()  # what `get` returns for a miss when asked to tell it from a cached None


class BoundedCache(Generic[K, V]):
    """LRU with a time to live. ``get`` tells a cached ``None`` (a known
    absence) from a miss by its ``default``."""

    def __init__(
        self,
        max_entries: int,
        max_age_s: float,
        max_weight: int | None = None,
        weigh: Callable[[V], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age_s <= 0:
            raise ValueError("max_entries must be at least 1 and max_age_s positive")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.max_weight = max_weight
        self._weigh = weigh or (lambda _v: 0)
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V, int]] = OrderedDict()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K, default: object = None) -> V | object:
        """The fresh value for ``key``, else ``default`` (a stale entry is dropped)."""
        hit = self._items.get(key)
        if hit is None:
            return default
        if self._clock() - hit[0] >= self.max_age_s:
            self.pop(key)
            return default
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        w = self._weigh(value)
        if self.max_weight is not None and w > self.max_weight:
            return  # bigger than the whole cache: not cached at all
        self._items[key] = (self._clock(), value, w)
        self.weight += w
        self._evict()

    def pop(self, key: K) -> None:
        hit = self._items.pop(key, None)
        if hit is not None:
            self.weight -= hit[2]

    def clear(self) -> None:
        self._items.clear()
        self.weight = 0

    def _evict(self) -> None:
        now = self._clock()
        items = self._items
        while items:
            key, (t, _, w) = next(iter(items.items()))
            over = len(items) > self.max_entries or (self.max_weight is not None and self.weight > self.max_weight)
            if not over and now - t < self.max_age_s:
                break
            del items[key]
            self.weight -= w


