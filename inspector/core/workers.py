"""The long-lived worker pools that stages share, in one place with one owner.

The unknown-defect branch runs beside the prompt detector on one `unknown-branch` thread,
and the spectral CPU path fans out over a `spectral-cpu` pool. Creating threads per frame
would cost more than the work, so the pools live as long as the service: created here on
first use, shut down by `runtime.service.Service` when it stops (`shutdown`), so that no
worker thread outlives the service that used it. A later service in the same process
(tests, `inspector bench`) gets fresh pools.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def pool(name: str, threads: int) -> ThreadPoolExecutor:
    """The shared pool `name` with `threads` workers (thread names start with `name`)."""
    with _LOCK:
        p = _POOLS.get((name, threads))
        if p is None:
            p = _POOLS[(name, threads)] = ThreadPoolExecutor(threads, thread_name_prefix=name)
        return p


def shutdown() -> None:
    """Stop every pool and wait for its threads (the service calls this last)."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.shutdown(wait=True)  # work in flight finishes
