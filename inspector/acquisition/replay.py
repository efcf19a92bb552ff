"""Replay source: a folder of images or a COCO dataset, looping, at a rate or flat out.

COCO replay carries the dataset's boxes (and masks where present) as ground truth, so a
replay run can be scored like the synthetic source.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from inspector.acquisition.base import EndOfStream, FrameSource, SourceError
from inspector.config.sources import ReplaySourceConfig
from inspector.core.coco import decode_segmentation
from inspector.core.frames import DefectTruth, Frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ReplaySource(FrameSource):
    """Frames read from disk in a loop, with ground truth when the input is a COCO file."""

    kind = "replay"

    def __init__(self, name: str, cfg: ReplaySourceConfig) -> None:
        super().__init__(name)
        self.cfg = cfg
        self.items: list[tuple[Path, list[dict]]] = []  # (image path, COCO annotations)
        self.categories: dict[int, str] = {}
        self._index = 0
        self._frame_id = 0
        self._next_due = 0.0

    def open(self, pool) -> None:
        super().open(pool)
        path = Path(self.cfg.path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self.items = [(p, []) for p in files]
        elif path.suffix.lower() == ".json":
            self.items = self._read_coco(path)
        else:
            raise SourceError(f"replay {self.name}: {path} is neither a folder nor a COCO .json")
        if not self.items:
            raise SourceError(f"replay {self.name}: no images found in {path}")
        self._next_due = time.monotonic()

    def _read_coco(self, path: Path) -> list[tuple[Path, list[dict]]]:
        try:
            coco = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SourceError(f"replay {self.name}: cannot read {path}: {exc}") from exc
        images_dir = Path(self.cfg.images_dir) if self.cfg.images_dir else path.parent / "images"
        self.categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
        anns: dict[int, list[dict]] = {}
        for a in coco.get("annotations", []):
            anns.setdefault(a["image_id"], []).append(a)
        return [
            (images_dir / im["file_name"], anns.get(im["id"], []))
            for im in sorted(coco.get("images", []), key=lambda i: i["id"])
        ]

    @property
    def paced_by_consumer(self) -> bool:
        return self.cfg.rate_hz is None

    def grab(self, timeout: float) -> Frame | None:
        if self._index >= len(self.items):
            if not self.cfg.loop:
                raise EndOfStream(self.name)
            self._index = 0
        if self.cfg.rate_hz:
            wait = self._next_due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
            self._next_due = max(self._next_due + 1.0 / self.cfg.rate_hz, time.monotonic() - 1.0)
        t0 = time.monotonic()
        path, anns = self.items[self._index]
        self._index += 1
        flag = cv2.IMREAD_GRAYSCALE if self.cfg.grayscale else cv2.IMREAD_COLOR_RGB
        img = cv2.imread(str(path), flag)
        if img is None:
            raise SourceError(f"replay {self.name}: cannot read image {path}")
        got = self.pool.acquire(img.shape, img.dtype)
        if got is None:
            return None
        buf, release = got
        np.copyto(buf, img)
        frame_id = self._frame_id
        self._frame_id += 1
        return Frame(
            image=buf,
            camera=self.name,
            frame_id=frame_id,
            part_id=path.stem,
            ts_capture=time.time(),
            t_arrival=time.monotonic(),
            truth=self._truth(anns, img.shape[:2]) if anns or self.categories else None,
            meta={"path": str(path), "acq_ms": (time.monotonic() - t0) * 1000},
            release=release,
        )

    def _truth(self, anns: list[dict], shape: tuple[int, int]) -> list[DefectTruth]:

        out = []
        for a in anns:
            seg = a.get("segmentation")
            mask = decode_segmentation(seg, *shape) if isinstance(seg, list) else None
            x, y, w, h = a["bbox"]
            out.append(DefectTruth(self.categories.get(a["category_id"], str(a["category_id"])),
                                   (int(x), int(y), int(round(w)), int(round(h))), mask))
        return out
