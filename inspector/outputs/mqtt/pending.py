"""Results the outbox could not commit yet: kept in order, in memory, retried.

Why: a full disk or an I/O error on the state disk must never turn into a result that
is logged and dropped. Every result passes through here on its way into the outbox; it
goes in at once when it can. When a commit fails the result waits here (bounded, in
order) and the cause becomes a fault that health, `inspector status`, the retained
`status` topic and sd_notify show until a retry commits everything that waited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from inspector.outputs.mqtt.outbox import MemoryOutbox, Outbox, OutboxError

log = logging.getLogger("inspector.outputs.mqtt.outbox")

FaultListener = Callable[[str | None], None]  # the fault text, or None once it cleared


class PendingCommits:
    """An ordered, bounded buffer in front of `outbox.append`, shared by the result
    thread (`add`) and the service's main thread (`retry`)."""

    def __init__(self, outbox: Outbox | MemoryOutbox, max_items: int = 10_000,
                 retry_s: float = 1.0, on_fault: FaultListener | None = None) -> None:
        self.outbox = outbox
        self.max_items = max_items
        self.retry_s = retry_s
        self.on_fault = on_fault
        self.fault: str | None = None
        self.fault_since: float | None = None  # monotonic start of the current fault
        self.failures = 0  # failed commits since start
        self._items: deque[tuple[str, str, str, float]] = deque()
        self._lock = threading.Lock()
        self._next_retry = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def full(self) -> bool:
        return len(self) >= self.max_items

    def add(self, event_id: str, plc: str, result: str) -> bool:
        """Queue one result behind those waiting and commit what can be; True when
        nothing waits any more."""
        with self._lock:
            self._items.append((event_id, plc, result, time.time()))
            if self.fault is not None and time.monotonic() < self._next_retry:
                self._describe()
                return False
            return self._flush()

    def retry(self, force: bool = False) -> bool:
        """Commit what waits if the retry interval has passed (or `force`)."""
        with self._lock:
            if not self._items:
                return True
            if not force and time.monotonic() < self._next_retry:
                return False
            return self._flush()

    def event_ids(self, limit: int = 20) -> list[str]:
        with self._lock:
            return [item[0] for item in list(self._items)[:limit]]

    def _flush(self) -> bool:
        while self._items:
            event_id, plc, result, created = self._items[0]
            try:
                self.outbox.append(event_id, plc, result, created)
            except OutboxError as exc:
                self.failures += 1
                self._next_retry = time.monotonic() + self.retry_s
                first = self.fault is None
                if first:
                    self.fault_since = time.monotonic()
                self._cause = str(exc)
                self._describe()
                if first:
                    log.error("%s", self.fault)
                    self._notify()
                return False
            self._items.popleft()
        if self.fault is not None:
            log.warning("outbox commits again after %.1f s; every held result is committed",
                        time.monotonic() - (self.fault_since or time.monotonic()))
            self.fault = self.fault_since = None
            self._notify()
        return True

    def _describe(self) -> None:
        self.fault = (f"results cannot be committed: {self._cause}; {len(self._items)} "
                      f"result(s) held in memory (max {self.max_items}), retried every "
                      f"{self.retry_s:g} s")

    def _notify(self) -> None:
        if self.on_fault is not None:
            try:
                self.on_fault(self.fault)
            except Exception:  # a listener must not lose the result in our hands
                log.exception("outbox fault listener failed")
