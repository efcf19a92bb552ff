"""The shared worker pools (core.workers) end with the service that used them."""

from __future__ import annotations

import threading
from pathlib import Path

from inspector.config.station import load_config
from inspector.core import workers
from inspector.runtime.service import Service
from tests.helpers.files import write_config


def _pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("unknown-branch", "spectral-cpu"))]


def test_pools_are_shared_and_recreated_after_shutdown() -> None:
    a = workers.pool("test-pool", 2)
    assert workers.pool("test-pool", 2) is a
    assert a.submit(threading.current_thread).result().name.startswith("test-pool")
    workers.shutdown()
    assert workers.pool("test-pool", 2) is not a  # a later user gets a fresh one
    workers.shutdown()


def test_no_pool_thread_outlives_the_service(recipe_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "station.yaml", recipe_dir, console=False))
    service = Service(cfg)  # the recipe has good parts: the unknown branch runs per frame
    service.start()
    try:
        service.pipeline.wait(60)
        assert service.pipeline.stats.get("results") == 5
        assert any(n.startswith("unknown-branch") for n in _pool_threads())
    finally:
        service.stop()
    assert _pool_threads() == []
