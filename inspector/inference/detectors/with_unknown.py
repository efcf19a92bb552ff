"""Any detector plus the unknown-defect branch: what no prompt describes is still caught.

`WithUnknown(inner, branch)` enrols the recipe's detector as usual and the
`inspector.inference.unknown.UnknownBranch` on the recipe's good parts, then reports both: the
inner detector's detections, and the branch's regions far from every good part that
no prompt-class detection explains (an unknown region overlapping a class detection is
the same defect, already named). Only a class detection at or above its class's
threshold explains: a faint one the recipe would not count must not hide a defect the
good-part bank sees clearly (the prompt detector reports candidates down to 0.05).
The inner detector's own unknown detections that overlap a branch region are replaced
by it, so one defect is reported once. With `unknown.params.confirm` > 0 a prompt-class
detection is dropped where the good-part map stays below that share of the branch's
threshold: the part looks like the good parts there, so the class's score is taken for a
false alarm (opt-in; BENCHMARKS.md).
`build_detector(settings, unknown_rule)` wraps when the recipe's unknown rule is
enabled; a recipe with too few good parts keeps the inner detector alone (logged).
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from inspector.core.workers import pool
from inspector.inference.detectors.base import Detection, Detector, PromptExample
from inspector.inference.unknown.branch import UnknownBranch, UnknownParams

log = logging.getLogger(__name__)
INNER, BRANCH = "inner/", "unknown/"


def overlaps(a: Detection, b: Detection) -> bool:
    """True when the two detections share a pixel (masks when given, else boxes)."""
    ax, ay, aw, ah = (int(round(v)) for v in a.bbox)
    bx, by, bw, bh = (int(round(v)) for v in b.bbox)
    x0, y0 = max(ax, bx), max(ay, by)
    x1, y1 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
    if x1 <= x0 or y1 <= y0:
        return False
    return bool((a.covers(x0, y0, x1, y1) & b.covers(x0, y0, x1, y1)).any())


class WithUnknown(Detector):
    """The recipe's detector and the good-part unknown branch, behind one interface."""

    kind = "with-unknown"

    def __init__(self, inner: Detector, branch: UnknownBranch,
                 thresholds: dict[str, float] | None = None) -> None:
        self.inner = inner
        self.branch = branch
        self.thresholds = thresholds or {}  # class -> score from which it explains
        self.kind = f"{inner.kind}+unknown"  # the recipe cache keys on it
        self.active = False  # False: too few good parts, the inner detector works alone
        self.last_timing: dict[str, float] = {}  # the inner detector's split + unknown_ms

    def enroll(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool = False) -> None:
        self.inner.enroll(prompts, normals, progress=progress)
        need = self.branch.params.min_normals
        self.active = len(normals) >= need
        if not self.active:
            log.warning("unknown-defect branch off: %d good-part image(s), needs %d%s",
                        len(normals), need,
                        "; unknown.params.confirm is off with it: every class detection "
                        "counts" if self.branch.params.confirm > 0 else "")
            return
        self.branch.enroll(normals, progress=progress)  # logs the achieved false-alarm rate

    def detect(self, image: np.ndarray) -> list[Detection]:
        if not self.active:
            dets = self.inner.detect(image)
            self.last_timing = dict(self.inner.last_timing)
            return dets
        # the branch runs beside the inner detector: both spend most of their time in
        # ONNX Runtime / faiss, which release the GIL (measured on 2 cores, detect p50:
        # -6 % on a quiet machine, -17 % beside other work; BENCHMARKS.md)
        branch = pool("unknown-branch", 1).submit(self._timed_branch, image)
        try:
            dets = self.inner.detect(image)
        finally:
            regions, amap, branch_ms = branch.result()
        self.last_timing = dict(self.inner.last_timing)
        self.last_timing["unknown_ms"] = branch_ms
        dets = [d for d in dets if d.unknown or self.branch.confirms(d, amap)]
        named = [d for d in dets if not d.unknown
                 and d.score >= self.thresholds.get(d.cls, 0.0)]
        found = [u for u in regions if not any(overlaps(u, d) for d in named)]
        kept = [d for d in dets if not (d.unknown and any(overlaps(d, u) for u in found))]
        return kept + found

    def _timed_branch(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray, float]:
        t = time.perf_counter()
        regions, amap = self.branch.detect_with_map(image)
        return regions, amap, (time.perf_counter() - t) * 1e3

    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        inner = self.inner.enrolled_state()
        if inner is None:
            return None
        state = {INNER + k: v for k, v in inner.items()}
        state["unknown_active"] = np.array(self.active)
        if self.active:
            state.update({BRANCH + k: v for k, v in self.branch.state().items()})
        return state

    @property
    def cacheable(self) -> bool:
        return self.inner.cacheable

    @property
    def provisional(self) -> bool:
        return self.inner.provisional

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore enrolled_state(); ValueError (changing nothing) if it does not fit."""
        if "unknown_active" not in state:
            raise ValueError("enrolled state lacks 'unknown_active'")
        active = bool(state["unknown_active"])
        branch = self.branch.parse_state(
            {k[len(BRANCH):]: v for k, v in state.items() if k.startswith(BRANCH)}
        ) if active else None
        self.inner.load_enrolled_state(
            {k[len(INNER):]: v for k, v in state.items() if k.startswith(INNER)})
        self.active = active
        if branch is not None:
            self.branch.set_enrolment(*branch)

    @property
    def model_sha256(self) -> str:
        h = hashlib.sha256(self.inner.model_sha256.encode())
        h.update(self.branch.sha256().encode() if self.active or self.branch.bank is None
                 else b"off")
        return h.hexdigest()


def wrap_with_unknown(inner: Detector, rule, thresholds: dict[str, float] | None = None
                      ) -> Detector:
    """`inner` with the unknown branch when `rule` (recipe.UnknownRule) enables it;
    `thresholds`: the recipe's class thresholds (see WithUnknown).

    Raises ValueError naming the bad field when `rule.params` is invalid.
    """
    if rule is None or not rule.enabled:
        return inner
    from pydantic import ValidationError

    try:
        params = UnknownParams.model_validate(getattr(rule, "params", None) or {})
    except ValidationError as exc:
        lines = [f"unknown.params.{'.'.join(str(v) for v in e['loc'])}: {e['msg']}"
                 for e in exc.errors()]
        raise ValueError("invalid unknown-branch params:\n" + "\n".join(lines)) from None
    branch = UnknownBranch(params, target_rate=rule.target_false_alarm_rate,
                           at_threshold=rule.threshold)
    return WithUnknown(inner, branch, thresholds)
