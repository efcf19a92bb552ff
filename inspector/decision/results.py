"""Results: build the `inspector.result/1` Result (core.result) for one inspected part.

Every result gets a unique `event_id` (consumers de-duplicate on it) and a `(session,
seq)` pair that increases by one per result, so consumers can see gaps.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from functools import cache
from importlib import resources

import numpy as np
from pydantic import ValidationError

from inspector.core.frames import Frame
from inspector.core.result import ERROR_CODE, SCHEMA, Result
from inspector.decision.verdict import Verdict
from inspector.inference.detectors.base import Detection

log = logging.getLogger(__name__)
STAGES = ("acq", "queue", "preprocess", "infer", "decide")


class ResultBuilder:
    """Stamps session, seq and event ids; one per service run."""

    def __init__(self, session: str | None = None) -> None:
        self.session = session or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def build(
        self,
        frame: Frame,
        detections: list[Detection],
        verdict: Verdict,
        recipe_ref: dict,
        model_sha256: str,
        mm_per_px: float,
        offset: tuple[int, int] = (0, 0),
        image_uri: str | None = None,
    ) -> Result:
        """The validated Result of one part (the model checks it against the contract)."""
        h, w = frame.image.shape[:2]
        defects = [
            defect_payload(d, acc, mm_per_px, offset, (h, w))
            for d, acc in zip(detections, verdict.accepted, strict=True)
        ]
        doc = {
            "schema": SCHEMA,
            "event_id": uuid.uuid4().hex,
            "session": self.session,
            "seq": self.next_seq(),
            "ts_capture": frame.ts_capture,
            "ts_done": time.time(),
            "camera": frame.camera,
            "frame_id": int(frame.frame_id),
            "part_id": str(frame.part_id),
            "request_id": frame.meta.get("request_id"),
            "recipe": {**recipe_ref, "model_sha256": model_sha256},
            "verdict": "OK" if verdict.ok else "NG",
            "code": int(verdict.code),
            "score": round(float(min(max(verdict.score, 0.0), 1.0)), 4),
            "reasons": list(verdict.reasons),
            "defects": defects,
            "latency_ms": latency_ms(frame),
            "image_uri": image_uri,
            "replayed": False,
        }
        try:
            return Result.model_validate(doc)
        except ValidationError as exc:  # e.g. a detector's NaN score: fail safe, same seq
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            log.error("result %s of %s is outside the result contract (%s: %s): NG %d",
                      doc["seq"], doc["part_id"], where, err["msg"], ERROR_CODE)
            doc.update(verdict="NG", code=ERROR_CODE, score=1.0, defects=[], reasons=[
                f"inspection error: result outside the contract: {where}: {err['msg']}"])
            return Result.model_validate(doc)


def latency_ms(frame: Frame) -> dict:
    """Per-stage durations (ms) from the frame's monotonic stamps.

    `acq` is what the source reports for delivering the frame (render, copy) in
    meta["acq_ms"]; the other stages run from the arrival in the pipeline on; `total`
    is acq plus arrival to decision.
    """
    out = {"acq": round(float(frame.meta.get("acq_ms", 0.0)), 3)}
    prev = frame.t_arrival
    for stage in STAGES[1:]:
        t = frame.stamps.get(stage, prev)
        out[stage] = round((t - prev) * 1000, 3)
        prev = t
    out["total"] = round((prev - frame.t_arrival) * 1000 + out["acq"], 3)
    return out


def defect_payload(
    d: Detection, accepted: bool, mm_per_px: float, offset: tuple[int, int], shape: tuple[int, int]
) -> dict:
    """One detection as a result's `defects` entry: frame coordinates, mm², mask, accepted."""
    x, y, w, h = d.bbox
    ox, oy = offset
    out = {
        "class": d.cls,
        "score": round(float(min(max(d.score, 0.0), 1.0)), 4),
        "bbox": [round(float(x + ox), 1), round(float(y + oy), 1), round(float(w), 1),
                 round(float(h), 1)],
        "area_px": float(d.area_px),
        "area_mm2": round(float(d.area_px) * mm_per_px * mm_per_px, 4),
        "prompt_id": d.prompt_id,
        "unknown": bool(d.unknown),
        "accepted": bool(accepted),
    }
    if d.mask is not None:
        out["mask"] = encode_mask(d.mask, (int(round(x)) + ox, int(round(y)) + oy), shape)
    return out


def encode_mask(crop: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]) -> dict:
    """COCO RLE over the full frame of a bbox-local boolean mask."""
    full = np.zeros(shape, dtype=np.uint8, order="F")
    x0, y0 = origin
    mh, mw = crop.shape
    x1, y1 = min(x0 + mw, shape[1]), min(y0 + mh, shape[0])
    full[y0:y1, x0:x1] = crop[: y1 - y0, : x1 - x0]
    from pycocotools import mask as mask_utils  # on use: importing the runtime stays light

    rle = mask_utils.encode(full)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


@cache
def schema(name: str = "result") -> dict:
    """A JSON Schema shipped in the package (inspector/outputs/schemas/<name>.schema.json)."""
    text = resources.files("inspector.outputs.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)
