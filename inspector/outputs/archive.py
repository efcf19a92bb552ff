"""Image archive: NG images and overlays, a sample of OK images, retention, never blocking.

The result thread calls `Archive.submit(image, result)`: it decides which files the part
gets, names them, copies the image and queues the job without waiting (a full queue or
a disk below the watermark drops the job, counted and warned about) and returns the
`image_uri` for the result (the overlay of a NG part, the image of a sampled OK part).
The `archive` thread (started by inspector.runtime.pipeline, where every thread is listed)
encodes and writes the files, each through a temporary name and an atomic rename, and
prunes: whole day folders older than `max_age_days`, then the oldest files while the
free space of the disk is below the watermark. When the disk stays full (something
else filled it), inspection goes on and archive writes are dropped, counted, warned
about. A write that fails (ENOSPC, EIO) is counted too; its `image_uri` then names a
file that does not exist, as it would after retention removed it.

`image_uri` is a `file://` path, or, when the station page serves the archive
(`web.enabled`), `<web URL>/archive/<kind>/<day>/<name>`, which a client with a login of
the page can fetch from another machine.

Layout: `<dir>/<kind>/<YYYY-MM-DD>/<HHMMSS>_<camera>_<seq>_<part>_<event8>.<ext>`, kind
`ng`, `overlays` or `ok`, dates in UTC. Pruning touches nothing outside those folders,
so `dir` may be the state folder itself.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from inspector.config.sections import ArchiveConfig
from inspector.core.atomic import write_bytes_atomic
from inspector.core.result import Result
from inspector.core.stats import Stats
from inspector.outputs.overlay import draw

log = logging.getLogger(__name__)
KINDS = ("ng", "overlays", "ok")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
Writer = Callable[[Path, bytes], None]  # writes the encoded bytes to the path


def _atomic_write(path: Path, data: bytes) -> None:
    """Archive files are rewritable evidence, not state: no fsync on the per-frame path."""
    write_bytes_atomic(path, data, fsync=False)


@dataclass
class _Job:
    image: np.ndarray
    result: Result
    files: list[tuple[str, Path]]  # (kind, final path)


def disk_figures(path: Path) -> dict:
    """Total, free (for this unprivileged user) and used share (as `df` shows it) of the
    disk holding `path`."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    used_pct = 100.0 * used / (used + free) if used + free else 0.0
    return {"path": str(path), "total_bytes": total, "free_bytes": free,
            "used_pct": round(used_pct, 2)}


class _RateLimitedWarning:
    """First occurrence at once, then at most one line per `every_s` with the count."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def __call__(self, key: str, msg: str) -> None:
        now = time.monotonic()
        self._pending[key] = self._pending.get(key, 0) + 1
        if now - self._last.get(key, -1e9) >= self.every_s:
            n = self._pending.pop(key)
            self._last[key] = now
            log.warning("archive: %s (%d time(s) since the last warning)", msg, n)


class Archive:
    """Owns the archive folder; `submit` from the result thread, `run` on its own thread."""

    def __init__(self, cfg: ArchiveConfig, root: Path, writer: Writer = _atomic_write,
                 stats: Stats | None = None, uri_base: str | None = None) -> None:
        self.cfg = cfg
        self.root = Path(root)
        # `http(s)://host:port/archive/` when the station page serves the archive: image_uri
        # is then a URL others can open (authenticated), not a file:// path on this PC
        self.uri_base = uri_base
        self.stats = stats or Stats()
        self._writer = writer
        self._queue: queue.Queue[_Job] = queue.Queue(cfg.queue)
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._warn = _RateLimitedWarning()
        self._ok_seen = 0
        self._error_logged = -1e9
        self._disk_low = False
        self._disk: dict | None = None
        self._disk_at = 0.0
        self._next_prune = 0.0
        self.bytes = 0  # archive size, from the last full scan plus writes minus deletions
        self.files = 0
        self._scanned = False
        self.root.mkdir(parents=True, exist_ok=True)

    # -- result thread ---------------------------------------------------------------

    def submit(self, image: np.ndarray, result: Result) -> str | None:
        """Queue the files this part gets; return the result's image_uri (None: none)."""
        files = self._plan(result)
        if not files:
            return None
        if self._disk_low:
            self._drop("disk_low", f"free disk space below the watermark "
                       f"({self._watermark_text()}): images not archived")
            return None
        try:
            self._queue.put_nowait(_Job(np.array(image, copy=True), result, files))
        except queue.Full:
            self._drop("queue_full", "the archive thread is behind (queue full): "
                       "images not archived")
            return None
        uri_kind = "overlays" if result.verdict == "NG" and self.cfg.ng_overlays else None
        path = next(p for k, p in files if uri_kind is None or k == uri_kind)
        if self.uri_base is not None:
            return self.uri_base + path.relative_to(self.root).as_posix()
        return path.resolve().as_uri()

    def _plan(self, result: Result) -> list[tuple[str, Path]]:
        cfg = self.cfg
        if result.verdict == "NG":
            kinds = [k for k, on in (("overlays", cfg.ng_overlays), ("ng", cfg.ng_images)) if on]
        else:
            self._ok_seen += 1
            keep = cfg.ok_sample_every and (self._ok_seen - 1) % cfg.ok_sample_every == 0
            kinds = ["ok"] if keep else []
        if not kinds:
            return []
        ts = datetime.fromtimestamp(result.ts_capture, UTC)
        part = _UNSAFE.sub("-", result.part_id)[:64]
        name = (f"{ts:%H%M%S}_{_UNSAFE.sub('-', result.camera)}_{result.seq:06d}_"
                f"{part}_{result.event_id[:8]}.{cfg.format}")
        return [(k, self.root / k / f"{ts:%Y-%m-%d}" / name) for k in kinds]

    def _drop(self, why: str, msg: str) -> None:
        """One part whose images (some or all) are not archived: counted, warned about."""
        self.stats.count("archive_dropped")
        self.stats.count(f"archive_dropped.{why}")
        self._warn(why, msg)

    # -- archive thread --------------------------------------------------------------

    def run(self) -> None:
        """The archive thread: write queued jobs, prune now and then; ends after finish()."""
        while not self._abort.is_set():
            now = time.monotonic()
            if now >= self._next_prune:
                self._next_prune = now + self.cfg.prune_interval_s
                self._guarded(self.prune)
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._closing.is_set():
                    return
                if self._disk_low:  # submit() drops while low: see whether space is back
                    self._guarded(self._disk_low_now)
                continue
            self._guarded(lambda job=job: self._write(job))
        left = 0
        while True:  # aborted at the stop deadline: what is left is counted, not written
            try:
                self._queue.get_nowait()
                left += 1
            except queue.Empty:
                break
        if left:
            self.stats.count("archive_dropped", left)
            self.stats.count("archive_dropped.shutdown", left)
            log.warning("archive: %d job(s) not written at the stop deadline", left)

    def _guarded(self, fn: Callable[[], None]) -> None:
        """The archive thread must survive anything: count, log (at most once a minute)."""
        try:
            fn()
        except Exception:
            self.stats.count("archive_errors")
            now = time.monotonic()
            if now - self._error_logged >= 60.0:  # e.g. the archive disk went away
                self._error_logged = now
                log.exception("archive: unexpected error (%d so far)",
                              self.stats.get("archive_errors"))

    def finish(self) -> None:
        """Write what is queued, then end `run` (no new jobs are expected)."""
        self._closing.set()

    def abort(self) -> None:
        """End `run` now; queued jobs are counted as dropped."""
        self._closing.set()
        self._abort.set()

    def _write(self, job: _Job) -> None:
        if self._disk_low_now():
            self._drop("disk_low", f"free disk space below the watermark "
                       f"({self._watermark_text()}): images not archived")
            return
        failed = False
        for kind, path in job.files:
            try:
                data = self._encode(draw(job.image, job.result) if kind == "overlays"
                                    else job.image)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._writer(path, data)
            except OSError as exc:
                self.stats.count("archive_write_errors")
                if not failed:  # one drop per part, like the other drop reasons
                    self._drop("write_error", f"writing {path} failed: {exc}")
                failed = True
                self._disk_at = 0.0  # look at the disk again before the next write
                continue
            self.stats.count(f"archive_written.{kind}")
            self.bytes += len(data)
            self.files += 1

    def _encode(self, image: np.ndarray) -> bytes:
        if self.cfg.format == "jpg":
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY,
                                                   self.cfg.jpeg_quality])
        else:
            ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"cv2 could not encode a {image.shape} {image.dtype} image")
        return buf.tobytes()

    # -- disk and retention ----------------------------------------------------------

    def disk(self, max_age_s: float = 1.0) -> dict:
        """Disk figures of the archive's file system, cached for `max_age_s`."""
        now = time.monotonic()
        if self._disk is None or now - self._disk_at > max_age_s:
            self._disk = disk_figures(self.root)
            self._disk_at = now
        return self._disk

    def watermark_bytes(self, total: int) -> float:
        return max(self.cfg.min_free_mb * 1e6, total * self.cfg.min_free_pct / 100.0)

    def _watermark_text(self) -> str:
        return f"min_free_mb {self.cfg.min_free_mb:g} / min_free_pct {self.cfg.min_free_pct:g}"

    def _disk_low_now(self) -> bool:
        """Below the watermark even after pruning: writes must be dropped."""
        d = self.disk()
        if d["free_bytes"] >= self.watermark_bytes(d["total_bytes"]):
            self._set_low(False)
            return False
        self.prune()
        d = self.disk(0.0)
        low = d["free_bytes"] < self.watermark_bytes(d["total_bytes"])
        self._set_low(low)
        return low

    def _set_low(self, low: bool) -> None:
        if low != self._disk_low:
            d = self.disk()
            if low:
                log.warning("archive: disk %s has %.1f MB free, below the watermark (%s), "
                            "and nothing left to prune: archive writes are dropped until "
                            "space returns; inspection goes on", d["path"],
                            d["free_bytes"] / 1e6, self._watermark_text())
            else:
                log.info("archive: disk space back above the watermark; archiving again")
            self._disk_low = low

    def _days(self) -> list[tuple[str, Path]]:
        """(day, folder) of every kind, oldest day first."""
        out = []
        for kind in KINDS:
            base = self.root / kind
            if base.is_dir():
                out += [(d.name, d) for d in base.iterdir() if d.is_dir() and DAY_RE.match(d.name)]
        return sorted(out)

    def prune(self, now: datetime | None = None) -> dict:
        """Apply retention: by age (whole days), then by the free-disk watermark."""
        removed = {"age_files": 0, "watermark_files": 0}
        if not self._scanned:
            self._scan()
        if self.cfg.max_age_days is not None:
            now = now or datetime.now(UTC)
            cutoff = f"{now - timedelta(days=self.cfg.max_age_days):%Y-%m-%d}"
            for day, folder in self._days():
                if day < cutoff:
                    n, size = self._folder_size(folder)
                    shutil.rmtree(folder, ignore_errors=True)
                    self._forget(n, size)
                    removed["age_files"] += n
        d = self.disk(0.0)
        need = self.watermark_bytes(d["total_bytes"]) - d["free_bytes"]
        if need > 0:
            removed["watermark_files"] = self._free_space(d["total_bytes"])
        if removed["age_files"]:
            self.stats.count("archive_pruned.age", removed["age_files"])
            log.info("archive: removed %d file(s) older than %g days", removed["age_files"],
                     self.cfg.max_age_days)
        if removed["watermark_files"]:
            self.stats.count("archive_pruned.watermark", removed["watermark_files"])
            log.info("archive: removed %d oldest file(s) to keep %s free",
                     removed["watermark_files"], self._watermark_text())
        return removed

    def _free_space(self, total: int) -> int:
        """Delete the oldest files until the disk is above the watermark; files removed."""
        removed = 0
        for _, folder in self._days():
            files = sorted(p for p in folder.iterdir() if p.is_file())
            for i, p in enumerate(files):
                try:
                    size = p.stat().st_size
                    p.unlink()
                except OSError:
                    continue
                self._forget(1, size)
                removed += 1
                if i % 16 == 15 or i == len(files) - 1:
                    d = self.disk(0.0)
                    if d["free_bytes"] >= self.watermark_bytes(total):
                        if i == len(files) - 1:
                            _rmdir_quiet(folder)
                        return removed
            _rmdir_quiet(folder)
        return removed

    def _scan(self) -> None:
        n = size = 0
        for _, folder in self._days():
            fn, fs = self._folder_size(folder)
            n, size = n + fn, size + fs
        self.files, self.bytes, self._scanned = n, size, True

    @staticmethod
    def _folder_size(folder: Path) -> tuple[int, int]:
        n = size = 0
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                n += 1
                size += entry.stat(follow_symlinks=False).st_size
        return n, size

    def _forget(self, n: int, size: int) -> None:
        self.files = max(self.files - n, 0)
        self.bytes = max(self.bytes - size, 0)

    def figures(self) -> dict:
        """For the `stats` payload: disk, archive size, queue depth, drop state."""
        d = self.disk(5.0)
        return {"files": self.files, "bytes": self.bytes, "queue": self._queue.qsize(),
                "disk_low": self._disk_low,
                "watermark_bytes": int(self.watermark_bytes(d["total_bytes"]))}


def _rmdir_quiet(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
