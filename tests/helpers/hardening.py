"""Helpers for the hostile-input and full-disk tests (not a test module): a small tmpfs,
a service on a real broker with the small test recipe, filling and freeing a disk."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.config.station import load_config
from inspector.runtime.service import Service
from tests.helpers.files import write_config, write_recipe


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m", ro: bool = False) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (needs root or CAP_SYS_ADMIN; skips otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk says ENOSPC; returns it (delete it to free)."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def station_config(tmp_path: Path, broker_port: int, state_dir: Path, **extra) -> Path:
    """A station with the small test recipe, a synthetic camera and MQTT to the broker."""
    recipe = write_recipe(tmp_path / "recipes" / "test-part")
    cfg = dict(
        cameras=[{"name": "cam0", "source": {"kind": "synthetic", "seed": 2, "rate_hz": 10,
                                              "width": 128, "height": 128}}],
        console=False, stats_interval_s=0.5, archive={"enabled": False},
        storage={"state_dir": str(state_dir), "results_jsonl": None},
        mqtt={"host": "127.0.0.1", "port": broker_port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0, "outbox": {"path": "outbox.sqlite"}},
    )
    cfg.update(extra)
    return write_config(tmp_path / "station.yaml", recipe, **cfg)


class Running:
    """A started Service with its main loop on a thread; records every result it made."""

    def __init__(self, cfg_path: Path, extra_sinks: list | None = None) -> None:
        self.made: list[str] = []
        self.svc = Service(load_config(cfg_path), extra_sinks=extra_sinks,
                           on_result=lambda f: self.made.append(f.result.event_id))
        self.svc.start()
        self.main = threading.Thread(target=self.svc.run_until_stopped, daemon=True)
        self.main.start()

    def stop(self) -> None:
        self.svc.stop()
        self.main.join(15)


def cli(*argv: str) -> int:
    """Run one `inspector` verb in this process (no logging setup), return its exit code."""
    from inspector.cli.main import build_parser

    args = build_parser().parse_args(list(argv))
    return int(args.func(args) or 0)


def rm(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
