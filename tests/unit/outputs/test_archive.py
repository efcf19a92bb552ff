"""Image archive: layout and image_uri, retention by age and by free-disk watermark, a
full disk (a real small tmpfs where it can be mounted, a fault-injecting writer
everywhere), and a result thread that never waits for the disk."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pytest

from inspector.config.sections import ArchiveConfig
from inspector.core.frames import FramePool
from inspector.decision.results import ResultBuilder
from inspector.outputs.archive import Archive, _atomic_write, disk_figures
from inspector.outputs.overlay import class_colour
from inspector.recipes.recipe import load_recipe
from inspector.runtime.pipeline import ActiveRecipe, Pipeline
from tests.helpers.standins import ListSink, ScratchDetector, TickSource, result

IMAGE = np.full((64, 64), 90, np.uint8)
NO_WATERMARK = {"min_free_mb": 0, "min_free_pct": 0}


def uri_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def start(archive: Archive) -> threading.Thread:
    t = threading.Thread(target=archive.run, name="archive", daemon=True)
    t.start()
    return t


def finish(archive: Archive, t: threading.Thread) -> None:
    archive.finish()
    t.join(10)
    assert not t.is_alive()


def wait_until(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path`; skips where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                          str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root with CAP_SYS_ADMIN): "
                    f"{res.stderr.strip() or res.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_layout_image_uri_and_ok_sample(tmp_path: Path) -> None:
    archive = Archive(ArchiveConfig(ok_sample_every=3, **NO_WATERMARK), tmp_path / "arch")
    t = start(archive)
    ts = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    uris = [archive.submit(IMAGE, result(i, ng=i in (0, 7), ts=ts)) for i in range(8)]
    finish(archive, t)
    # NG parts: image_uri is the overlay; the raw frame is kept beside it
    for i in (0, 7):
        p = uri_path(uris[i])
        assert p.parent == tmp_path / "arch" / "overlays" / "2025-03-04"
        assert p.name.startswith(f"050607_cam0_{i:06d}_P-{i:04d}_")  # part id made safe
        overlay = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        # the frame's width, with the verdict banner above it and the legend below
        assert overlay.shape[1] == 64 and overlay.shape[0] > 64 and overlay.shape[2] == 3
        assert (np.abs(overlay.astype(int) - class_colour("scratch")).sum(axis=2) < 40).sum() \
            > 20  # the counted scratch, drawn in its class colour
        raw = cv2.imread(str(tmp_path / "arch" / "ng" / "2025-03-04" / p.name),
                         cv2.IMREAD_UNCHANGED)
        assert raw.shape == (64, 64) and (raw == 90).all()
    # OK parts 1..6: every 3rd one (the 1st and the 4th) is kept
    ok = [i for i in range(1, 7) if uris[i] is not None]
    assert ok == [1, 4]
    assert all(uri_path(uris[i]).parent.parts[-2:] == ("ok", "2025-03-04") for i in ok)
    assert archive.stats.get("archive_written.overlays") == 2
    assert archive.stats.get("archive_written.ok") == 2
    assert archive.figures()["files"] == 6
    assert archive.stats.get("archive_dropped") == 0


def test_retention_by_age_removes_only_old_days(tmp_path: Path) -> None:
    root = tmp_path / "state"
    now = datetime(2025, 6, 30, 12, tzinfo=UTC)
    days = {"ng/2025-05-01": 3, "overlays/2025-05-30": 2, "ok/2025-05-31": 1,
            "ng/2025-06-29": 2, "overlays/2025-06-30": 1}
    for folder, n in days.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"{i}.png").write_bytes(b"x" * 100)
    (root / "results.jsonl").write_text("{}\n")  # not the archive's: never touched
    (root / "ng" / "notes").mkdir()
    archive = Archive(ArchiveConfig(max_age_days=30, **NO_WATERMARK), root)
    removed = archive.prune(now)
    assert removed["age_files"] == 5  # 2025-05-01 and 2025-05-30 are older than 30 days
    assert not (root / "ng" / "2025-05-01").exists()
    assert not (root / "overlays" / "2025-05-30").exists()
    for kept in ("ok/2025-05-31", "ng/2025-06-29", "overlays/2025-06-30", "ng/notes",
                 "results.jsonl"):
        assert (root / kept).exists(), kept
    assert archive.stats.get("archive_pruned.age") == 5
    assert archive.figures()["files"] == 4


def test_watermark_prunes_oldest_first_on_a_small_filesystem(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", "4m") as fs:
        root = fs / "archive"
        rng = np.random.default_rng(0)
        for d in range(1, 6):
            folder = root / "ng" / f"2025-01-0{d}"
            folder.mkdir(parents=True)
            for i in range(3):  # incompressible 200 kB files: 3 MB in all
                (folder / f"{i:02d}.png").write_bytes(rng.bytes(200_000))
        cfg = ArchiveConfig(max_age_days=None, min_free_mb=1.5, min_free_pct=0)
        archive = Archive(cfg, root)
        assert disk_figures(fs)["free_bytes"] < 1.5e6
        removed = archive.prune()
        free = disk_figures(fs)["free_bytes"]
        assert free >= 1.5e6
        assert removed["watermark_files"] >= 3
        assert not (root / "ng" / "2025-01-01").exists()  # the oldest day went first
        assert len(list((root / "ng" / "2025-01-05").iterdir())) == 3  # newest untouched
        left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
        assert len(left) == 15 - removed["watermark_files"]
        assert archive.stats.get("archive_pruned.watermark") == removed["watermark_files"]


def _pipeline(recipe_dir: Path, archive: Archive, count: int) -> tuple[Pipeline, ListSink]:
    src = TickSource("cam0", count, period=0.002)
    src.open(FramePool(96))
    sink = ListSink()
    p = Pipeline([src], ActiveRecipe(load_recipe(recipe_dir), ScratchDetector()), [sink],
                 ResultBuilder("test"), frame_queue=64, result_queue=16, archive=archive)
    return p, sink


def test_disk_full_inspection_goes_on_drops_counted_and_warned(
        tmp_path: Path, recipe_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_fs(tmp_path / "fs", "3m") as fs:
        filler = fs / "filler"  # something else filled the disk: nothing to prune
        free = disk_figures(fs)["free_bytes"]
        filler.write_bytes(b"\0" * (free - 200_000))
        archive = Archive(ArchiveConfig(min_free_mb=1.0, min_free_pct=0), fs / "archive")
        p, sink = _pipeline(recipe_dir, archive, 40)
        with caplog.at_level(logging.WARNING, logger="inspector.outputs.archive"):
            p.start()
            assert p.wait(30)
        assert len(sink.results) == 40 == p.stats.get("frames_in")  # nothing held up
        assert all(r["verdict"] == "NG" for r in sink.results)
        assert archive.stats.get("archive_dropped") == 40  # each part counted once
        low = archive.stats.get("archive_dropped.disk_low")
        assert low >= 1 and low + archive.stats.get("archive_dropped.queue_full") == 40
        assert not list((fs / "archive").rglob("*.png"))
        # parts submitted before the archive thread looked at the disk got a URI (their
        # job was dropped when its turn came); later ones none
        uris = [r["image_uri"] for r in sink.results]
        assert uris[-1] is None and not any(uri_path(u).exists() for u in uris if u)
        assert "below the watermark" in caplog.text and "inspection goes on" in caplog.text

        # space comes back: the archive thread notices by itself and writes again
        filler.unlink()
        assert wait_until(lambda: not archive.figures()["disk_low"], 5.0)
        uri = archive.submit(IMAGE, result(99, ng=True))
        p.stop(4.0)  # the archive thread writes what is queued before it ends
        assert uri is not None and uri_path(uri).is_file()


def test_enospc_while_writing_leaves_no_partial_file(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with small_fs(tmp_path / "fs", "1m") as fs:
        free = disk_figures(fs)["free_bytes"]
        (fs / "filler").write_bytes(b"\0" * (free - 60_000))
        archive = Archive(ArchiveConfig(ng_images=False, **NO_WATERMARK), fs / "archive")
        noise = np.random.default_rng(1).integers(0, 255, (512, 512), np.uint8)  # ~260 kB
        t = start(archive)
        with caplog.at_level(logging.WARNING, logger="inspector.outputs.archive"):
            uri = archive.submit(noise, result(0, ng=True))
            finish(archive, t)
        assert archive.stats.get("archive_write_errors") == 1
        assert archive.stats.get("archive_dropped.write_error") == 1
        assert not uri_path(uri).exists()
        assert not [p for p in (fs / "archive").rglob("*") if p.is_file()]  # no .tmp left
        assert "No space left on device" in caplog.text


def test_fault_injecting_writer_counts_each_failure(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def flaky(path: Path, data: bytes) -> None:  # the disk refuses the first three writes
        calls.append(path)
        if len(calls) <= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        _atomic_write(path, data)

    archive = Archive(ArchiveConfig(ng_images=False, **NO_WATERMARK), tmp_path / "a",
                      writer=flaky)
    t = start(archive)
    with caplog.at_level(logging.WARNING, logger="inspector.outputs.archive"):
        uris = [archive.submit(IMAGE, result(i, ng=True)) for i in range(5)]
        finish(archive, t)
    assert len(calls) == 5
    assert archive.stats.get("archive_write_errors") == 3
    assert archive.stats.get("archive_dropped.write_error") == 3
    assert [uri_path(u).is_file() for u in uris] == [False, False, False, True, True]
    warnings = [r for r in caplog.records if "No space left" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line, later ones counted in the next


def test_slow_disk_never_blocks_the_result_thread(tmp_path: Path) -> None:
    def slow(path: Path, data: bytes) -> None:
        time.sleep(0.2)
        _atomic_write(path, data)

    archive = Archive(ArchiveConfig(queue=2, ng_images=False, **NO_WATERMARK),
                      tmp_path / "a", writer=slow)
    t = start(archive)
    t0 = time.monotonic()
    uris = [archive.submit(IMAGE, result(i, ng=True)) for i in range(30)]
    elapsed = time.monotonic() - t0
    finish(archive, t)
    assert elapsed < 1.0  # waiting for the disk would take 30 x 0.2 s
    dropped = archive.stats.get("archive_dropped.queue_full")
    assert dropped >= 25 and sum(u is None for u in uris) == dropped
    assert all(uri_path(u).is_file() for u in uris if u is not None)


def test_config_rejects_an_archive_that_keeps_nothing() -> None:
    with pytest.raises(ValueError, match="archive keeps nothing"):
        ArchiveConfig(ng_images=False, ng_overlays=False)
    ArchiveConfig(enabled=False, ng_images=False, ng_overlays=False)  # off: fine


def test_day_folder_boundary_uses_utc(tmp_path: Path) -> None:
    archive = Archive(ArchiveConfig(**NO_WATERMARK), tmp_path / "a")
    late = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC) + timedelta(seconds=2)
    uri = archive.submit(IMAGE, result(0, ng=True, ts=late.timestamp()))
    assert uri_path(uri).parent.name == "2026-01-01"
    archive.abort()
    archive.run()  # aborted: the queued job is counted, not written
    assert archive.stats.get("archive_dropped.shutdown") == 1
