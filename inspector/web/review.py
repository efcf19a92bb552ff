"""NG review: a reviewer's marks on recent parts, kept on disk and exported as COCO.

A mark says *true defect* (optionally with the right class) or *false call*. The first
mark of a part also stores its frame (PNG) and its result (JSON) under
`<state_dir>/review/`, so marks and their images outlive the in-memory list of recent parts
and a restart. Marks are appended to `marks.jsonl` (the last mark of a part wins).
`coco()` turns them into a COCO file next to the images: true defects become annotations
(the counted defects' boxes, with the reviewer's class where given), false calls become
images without annotations (negatives). `inspector recipe import-coco` reads that file.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import cv2

from inspector.core.atomic import write_bytes_atomic
from inspector.core.result import Result
from inspector.web.live import Part

EVENT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"  # also a file name here: nothing else
EVENT_ID = re.compile(EVENT_ID_PATTERN)


class ReviewStore:
    """Marks, frames and results of reviewed parts, under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    @property
    def marks_file(self) -> Path:
        """Where the marks are appended."""
        return self.folder / "marks.jsonl"

    def mark(self, part: Part | None, event_id: str, mark: str, cls: str | None,
             user: str) -> dict:
        """Record a mark; the part's frame and result are stored on its first mark."""
        if not EVENT_ID.match(event_id):
            raise ValueError(f"not an event id: {event_id!r}")
        entry = {"event_id": event_id, "mark": mark, "cls": cls, "user": user,
                 "t": round(time.time(), 3)}
        with self._lock:
            if part is not None and not (self.folder / "images" / f"{event_id}.png").exists():
                ok, png = cv2.imencode(".png", part.image)
                if not ok:
                    raise ValueError(f"cannot encode the frame of {event_id}")
                write_bytes_atomic(self.folder / "results" / f"{event_id}.json",
                                   json.dumps({**part.result.payload(),
                                               "_offset": list(part.offset)}).encode())
                write_bytes_atomic(self.folder / "images" / f"{event_id}.png", png.tobytes())
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.marks_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
        return entry

    def marks(self) -> dict[str, dict]:
        """The last mark of every reviewed part, by event id."""
        try:
            lines = self.marks_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        out: dict[str, dict] = {}
        for line in lines:
            if line.strip():
                entry = json.loads(line)
                out[entry["event_id"]] = entry
        return out

    def part(self, event_id: str) -> Part | None:
        """A reviewed part read back from disk (its frame and result), or None."""
        if not EVENT_ID.match(event_id):
            return None
        img_path = self.folder / "images" / f"{event_id}.png"
        res_path = self.folder / "results" / f"{event_id}.json"
        if not (img_path.is_file() and res_path.is_file()):
            return None
        doc = json.loads(res_path.read_text(encoding="utf-8"))
        offset = tuple(doc.pop("_offset", (0, 0)))
        image = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            return None
        return Part(Result.model_validate(doc), image, (int(offset[0]), int(offset[1])),
                    res_path.stat().st_mtime)

    def coco(self) -> dict:
        """Every reviewed part as COCO (also written to `reviewed.coco.json` beside them)."""
        images, annotations, names = [], [], []
        for n, (event_id, m) in enumerate(sorted(self.marks().items()), 1):
            part = self.part(event_id)
            if part is None:
                continue
            h, w = part.image.shape[:2]
            images.append({"id": n, "file_name": f"images/{event_id}.png", "width": w,
                           "height": h, "event_id": event_id, "mark": m["mark"],
                           "reviewer": m["user"]})
            if m["mark"] != "true_defect":
                continue
            for d in part.result.defects:
                if not d.accepted:
                    continue
                name = m.get("cls") or ("unknown" if d.unknown else d.cls)
                if name not in names:
                    names.append(name)
                annotations.append({"id": len(annotations) + 1, "image_id": n,
                                    "category_id": names.index(name) + 1,
                                    "bbox": [round(v, 2) for v in d.bbox],
                                    "area": round(d.bbox[2] * d.bbox[3], 2), "iscrowd": 0})
        coco = {"info": {"description": "Inspector: parts reviewed on the station page"},
                "images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": s} for i, s in enumerate(names)]}
        write_bytes_atomic(self.folder / "reviewed.coco.json",
                           json.dumps(coco, indent=1).encode())
        return coco
