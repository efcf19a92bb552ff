"""Bounded queues between pipeline stages.

Acquisition must never wait for the detector: `DropOldestQueue.put` always succeeds, and
when the queue is full the oldest item is evicted, handed to `on_drop` and counted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded queue whose put never blocks: when full, the oldest item is dropped.

    `keep(item)` marks items that must not be dropped (a part a PLC triggered and waits
    for): the oldest other item goes instead, and only when every queued item is kept
    does the oldest of them go.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[T], None] | None = None,
                 keep: Callable[[T], bool] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._keep = keep
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> None:
        """Append without blocking; evict (and count) the oldest item when full."""
        evicted = None
        with self._cond:
            if len(self._items) >= self.maxsize:
                evicted = self._evict()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()
        if evicted is not None and self._on_drop is not None:
            self._on_drop(evicted)

    def _evict(self) -> T:
        """Remove and return the oldest item that may be dropped (the caller holds the lock)."""
        if self._keep is not None:
            for i, queued in enumerate(self._items):
                if not self._keep(queued):
                    del self._items[i]
                    return queued
        return self._items.popleft()

    def put_wait(self, item: T, timeout: float) -> bool:
        """Append once there is room (for sources paced by the consumer); False on timeout."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._cond.wait_for(lambda: len(self._items) < self.maxsize, timeout)
            if len(self._items) >= self.maxsize:
                return False
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()
            return True

    def wait_below(self, n: int, timeout: float) -> bool:
        """Wait until fewer than `n` items are queued; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._items) < n, timeout)

    def get(self, timeout: float) -> T | None:
        """Oldest item, or None after `timeout` seconds without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()  # room for a waiting put_wait
            return item

    def drain(self) -> list[T]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
