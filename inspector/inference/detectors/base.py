"""The narrow interface the pipeline knows of a detector.

`enroll` turns a recipe's prompt bank and good-part images into whatever the detector
needs (prototypes, a normal bank); `detect` maps one preprocessed image to detections.
Backends (classical texture features now; ONNX Runtime / TensorRT later) implement it.
A detector may also keep `last_timing` (ms per internal step of its last `detect`, e.g.
encode_ms, head_ms, unknown_ms): the pipeline hands it on with the result, so that
`inspector bench` can say where inference time goes. `EncodedDetector` does that split
for detectors that encode a frame once and then decode it (evaluation reuses the
encoding across prompt seeds).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import ValidationError

from inspector.core.strict import StrictModel


def json_bytes(value: object) -> np.ndarray:
    """`value` as JSON in a uint8 array: how an enrolled state (.npz, no pickle) carries a
    record (a selection, an adaptation)."""
    return np.frombuffer(json.dumps(value).encode(), np.uint8)


def from_json_bytes(raw: np.ndarray | None) -> Any:
    """What json_bytes() stored; None where the state holds nothing."""
    return None if raw is None else json.loads(np.asarray(raw, np.uint8).tobytes().decode())


def mono(image: np.ndarray) -> np.ndarray:
    """Colour frames are judged on luminance; the detectors are mono."""
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


class DetectorParams(StrictModel):
    """A detector's `detector.params`: unknown keys are errors, and `parse` names the
    first bad field as `detector.params.<field>` for the recipe's error message."""

    @classmethod
    def parse(cls, params: dict | None):
        try:
            return cls.model_validate(params or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"detector.params.{where}: {err['msg']}") from None


@dataclass
class Detection:
    """One defect found in a frame, in pixel coordinates of the image given to detect()."""

    cls: str  # class name from the recipe, or "unknown"
    score: float  # 0..1, comparable with the recipe's per-class threshold
    bbox: tuple[float, float, float, float]  # x, y, w, h
    mask: np.ndarray | None = None  # bool, shape (h, w) of the bbox (rounded), or None
    area_px: float = 0.0
    prompt_id: str | None = None  # the prompt example that explains it best
    unknown: bool = False  # True when no prompt class explains it

    def covers(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The detection's pixels (its mask, else its box) within the frame window
        [x0, x1) x [y0, y1), as a bool array of the window's shape: what overlap tests and
        the map checks of the unknown branch look at."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        bx, by, bw, bh = (int(round(v)) for v in self.bbox)
        cx0, cy0 = max(x0, bx), max(y0, by)
        cx1, cy1 = min(x1, bx + bw), min(y1, by + bh)
        if cx1 <= cx0 or cy1 <= cy0:
            return out
        if self.mask is None:
            out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = True
        else:
            part = self.mask[cy0 - by:cy1 - by, cx0 - bx:cx1 - bx]
            out[cy0 - y0:cy0 - y0 + part.shape[0], cx0 - x0:cx0 - x0 + part.shape[1]] = part
        return out


@dataclass
class PromptExample:
    """One reference defect from the recipe's prompt bank."""

    prompt_id: str
    cls: str
    image: np.ndarray  # full reference image (mono uint8)
    bbox: tuple[float, float, float, float]
    mask: np.ndarray | None = None  # bool, full image size


class Detector(ABC):
    """What the pipeline uses of a detector: enrol from a recipe once, then detect per frame."""

    kind: ClassVar[str]

    @abstractmethod
    def enroll(
        self,
        prompts: list[PromptExample],
        normals: list[np.ndarray],
        progress: bool = False,
    ) -> None:
        """Build class prototypes from `prompts` and the good-part bank from `normals`."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find defects in one mono uint8 image."""

    # ms per internal step of the last detect() (encode_ms, head_ms, unknown_ms); detectors
    # that split their time assign their own dict, the others keep this empty one
    last_timing: dict[str, float] = {}  # noqa: RUF012 - read-only default

    @property
    def cacheable(self) -> bool:
        """Whether load_enrolled_state() can restore an enrolment (a recipe cache, the
        child-process enrolment of a switch); detectors that can say so."""
        return False

    @property
    def provisional(self) -> bool:
        """True when the last enrolment was cut short (an adaptation stopped by its time
        cap): fit to inspect with now, but a recipe cache of it is enrolled again next time,
        so a busy moment does not fix a lesser enrolment for good."""
        return False

    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        """Arrays that fully describe the enrolment (prototypes, normal bank), so that a
        recipe cache (.npz, no pickle) can restore it; None if not cacheable."""
        return None

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what enrolled_state() returned, instead of enrolling again."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore an enrolment")

    @property
    def model_sha256(self) -> str:
        """Identifies the model (weights + code version) in every result."""
        return ""


class EncodedDetector(Detector):
    """A detector in two steps, timed apart: `encode` (the frame alone, independent of
    the enrolment) and `detect_tokens` (everything after: head, matching, NMS)."""

    last_timing: dict[str, float]

    @abstractmethod
    def encode(self, image: np.ndarray):
        """What detect_tokens needs of the frame; the same for every enrolment."""

    @abstractmethod
    def detect_tokens(self, encoded, hw: tuple[int, int]) -> list[Detection]:
        """Detections of a frame `encode` returned (`hw`: the frame's height, width)."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        t0 = time.perf_counter()
        encoded = self.encode(image)
        t1 = time.perf_counter()
        self.last_timing = {}  # detect_tokens may split its part (consensus: per member)
        dets = self.detect_tokens(encoded, image.shape[:2])
        self.last_timing = {"encode_ms": (t1 - t0) * 1e3,
                            "head_ms": (time.perf_counter() - t1) * 1e3, **self.last_timing}
        return dets
