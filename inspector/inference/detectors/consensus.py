"""Two detectors that must agree: a primary's boxes, ranked higher where a second,
different detector boxes the same class in the same place.

Why: on a product the model never saw, the training-free matcher (`match`) and the
prompt heads adapted at enrolment (`prompt` with `adapt: on`) fail differently. The
matcher boxes with the examples' own sizes but scores clean surface high; the adapted
heads rank better but miss the thin, long classes. A match that the adapted heads also
see is more likely a defect: measured on MagTile and NEU-DET, never trained on
(docs/prompt-matching.md, "Two detectors that agree").

Score of a primary detection with score s, when the best support detection of the same
class overlapping it at IoU >= `iou` scores t (0 when none):
`s * (1 + gain * t) / (1 + gain)`: monotone in both, in 0..1, and equal to s where the
support is sure. Support detections that no primary detection matches are dropped: the
primary decides where, the support only how sure.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from inspector.core.coco import iou_xywh
from inspector.inference.detectors.base import (
    Detection,
    DetectorParams,
    EncodedDetector,
    PromptExample,
)
from inspector.inference.detectors.registry import NestedDetector, detector_class

VERSION = "consensus/1"
PRIMARY, SUPPORT = "primary/", "support/"


class Member(NestedDetector):
    """One of the two detectors: its kind and its own `params` (checked as that kind's)."""

    kind: Literal["match", "prompt"]


class ConsensusParams(DetectorParams):
    """`detector.params` of `detector.kind: consensus`."""

    primary: Member = Field(default_factory=lambda: Member(kind="match"))
    support: Member = Field(default_factory=lambda: Member(
        kind="prompt", params={"adapt": "on"}))
    iou: Annotated[float, Field(gt=0, le=1)] = 0.3  # overlap that counts as the same defect
    gain: Annotated[float, Field(ge=0, le=100)] = 0.5  # weight of the support's score


def agree(primary: list[Detection], support: list[Detection], iou: float, gain: float
          ) -> list[Detection]:
    """The primary detections rescored by their best same-class support (module doc)."""
    by_cls: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cls in {d.cls for d in support}:
        mine = [d for d in support if d.cls == cls]
        by_cls[cls] = (np.array([d.bbox for d in mine], np.float64),
                       np.array([d.score for d in mine], np.float64))
    out = []
    for d in primary:
        t = 0.0
        if d.cls in by_cls:
            boxes, scores = by_cls[d.cls]
            hit = iou_xywh(np.array(d.bbox), boxes)[0] >= iou
            t = float(scores[hit].max()) if hit.any() else 0.0
        out.append(replace(d, score=float(d.score * (1 + gain * t) / (1 + gain))))
    out.sort(key=lambda d: -d.score)
    return out


class ConsensusDetector(EncodedDetector):
    """A primary detector whose detections a support detector confirms (module doc)."""

    kind = "consensus"

    def __init__(self, params: dict | None = None) -> None:
        self.params = ConsensusParams.parse(params)
        p = self.params
        self.primary = detector_class(p.primary.kind)(p.primary.params)
        self.support = detector_class(p.support.kind)(p.support.params)
        self.last_timing: dict[str, float] = {}

    @property
    def cacheable(self) -> bool:
        return bool(self.primary.cacheable and self.support.cacheable)

    @property
    def adapt_record(self) -> dict | None:
        """What enrolment-time adaptation did, when a member adapted (evaluation reports it)."""
        return (getattr(self.support, "adapt_record", None)
                or getattr(self.primary, "adapt_record", None))

    def enroll(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool = False) -> None:
        self.primary.enroll(prompts, normals, progress=progress)
        self.support.enroll(prompts, normals, progress=progress)

    def encode(self, image: np.ndarray) -> tuple[Any, Any]:
        return self.primary.encode(image), self.support.encode(image)

    def detect_tokens(self, encoded: tuple[Any, Any], hw: tuple[int, int]) -> list[Detection]:
        t0 = time.perf_counter()
        found = self.primary.detect_tokens(encoded[0], hw)
        t1 = time.perf_counter()
        seen = self.support.detect_tokens(encoded[1], hw)
        # the split of head_ms (detect() adds encode_ms and head_ms, as for every detector)
        self.last_timing = {"primary_ms": (t1 - t0) * 1e3,
                            "support_ms": (time.perf_counter() - t1) * 1e3}
        return agree(found, seen, self.params.iou, self.params.gain)

    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        a, b = self.primary.enrolled_state(), self.support.enrolled_state()
        if a is None or b is None:
            return None
        return {**{PRIMARY + k: v for k, v in a.items()},
                **{SUPPORT + k: v for k, v in b.items()}}

    @property
    def provisional(self) -> bool:
        return self.primary.provisional or self.support.provisional

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore enrolled_state(); ValueError when a member's part is missing."""
        parts = [{k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
                 for pre in (PRIMARY, SUPPORT)]
        if not all(parts):
            raise ValueError("enrolled state lacks the primary or the support detector's part")
        self.primary.load_enrolled_state(parts[0])
        self.support.load_enrolled_state(parts[1])

    @property
    def model_sha256(self) -> str:
        """Both members' models, this code's version and the agreement parameters."""
        h = hashlib.sha256(f"{VERSION}\0{self.params.iou}\0{self.params.gain}\0".encode())
        h.update(f"{self.primary.model_sha256}\0{self.support.model_sha256}".encode())
        h.update(json.dumps([self.params.primary.kind, self.params.support.kind]).encode())
        return h.hexdigest()
