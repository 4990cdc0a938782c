"""Memos bounded in bytes, not entries: a long-lived process (a solver's ``Retriever``, a
``retrieve --batch`` over thousands of tasks) keeps every cache under a fixed size whatever
the inputs — one entry may weigh 100 bytes or 1 MB (the analysis of a 30x30 grid).

Each cache site states its budget and estimates what one entry costs (``put``'s ``size``:
Python objects measured with ``tracemalloc`` for the site's largest inputs, rounded up).
The least recently used entries go first; an entry larger than the whole budget is not
kept. A memo only ever saves work: a miss recomputes the same value, so answers do not
depend on budgets (tests/test_cache_memory.py checks byte-identical output with tiny ones).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from vault import forksafe

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MiB = 1 << 20


class BoundedMemo(Generic[K, V]):
    """A least-recently-used memo holding at most ``max_bytes`` (estimated), thread-safe
    and fork-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = forksafe.lock(self, "_lock")  # (a forked child takes it anew)

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def has(self, key: K) -> bool:
        """Whether ``key`` is held (its value may be None), as recently used."""
        with self._lock:
            if key not in self._items:
                return False
            self._items.move_to_end(key)
            return True

    def put(self, key: K, value: V, size: int) -> None:
        """Remember ``value`` (estimated at ``size`` bytes), forgetting the least recently
        used entries as needed."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        """The estimated size of what it holds now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
