"""Decision: turn detections into a verdict with the recipe's rules.

A detection counts when its score reaches its class threshold and its area reaches the
class minimum (mm²). A part is NG when a class has more counted defects than its
`max_count`, or when any unknown defect counts. The PLC code is that of the most
severe failing rule (ties: the earlier class in the recipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from inspector.inference.detectors.base import Detection
from inspector.recipes.recipe import DefectClass, Recipe

SEVERITY_RANK = {"minor": 0, "major": 1, "critical": 2}
OK_CODE = 0


@dataclass
class Verdict:
    """The part's verdict: OK or NG, PLC code, score, reasons, and which detections counted."""

    ok: bool
    code: int
    score: float  # the part's defect score: highest counted detection score, else highest
    reasons: list[str] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)  # per detection: counted or not


Candidate = tuple[str, bool, float, float]  # class, unknown, score, area in mm²


def decide(detections: list[Detection], recipe: Recipe, mm_per_px: float) -> Verdict:
    """Apply the recipe's rules to one part's detections (see the module docstring)."""
    px_to_mm2 = mm_per_px * mm_per_px
    return decide_candidates(
        [(d.cls, d.unknown, d.score, d.area_px * px_to_mm2) for d in detections], recipe)


def decide_candidates(candidates: Sequence[Candidate], recipe: Recipe,
                      classes: Sequence[DefectClass] | None = None) -> Verdict:
    """The verdict of candidates already sized in mm², under `classes` (default: the
    recipe's): what `decide` applies to detections and the threshold preview applies again
    to the candidates a result carries, with proposed rules."""
    classes = recipe.classes if classes is None else classes
    rules = {c.name: c for c in classes}
    accepted: list[bool] = []
    counts: dict[str, int] = {}
    for cls_name, unknown, score, area_mm2 in candidates:
        rule = recipe.unknown if unknown else rules.get(cls_name)
        ok_rule = rule is not None and (not unknown or recipe.unknown.enabled)
        counted = ok_rule and score >= rule.threshold and area_mm2 >= rule.min_area_mm2
        accepted.append(bool(counted))
        if counted:
            key = "unknown" if unknown else cls_name
            counts[key] = counts.get(key, 0) + 1

    failing = []  # (severity rank, order, code, reason)
    for order, cls in enumerate(classes):
        n = counts.get(cls.name, 0)
        if n > cls.max_count:
            reason = (
                f"{cls.name}: {n} found, at most {cls.max_count} allowed "
                f"(score >= {cls.threshold}, area >= {cls.min_area_mm2} mm2)"
            )
            failing.append((SEVERITY_RANK[cls.severity], -order, cls.plc_code, reason))
    if counts.get("unknown", 0):
        u = recipe.unknown
        reason = f"unknown: {counts['unknown']} defect(s) no prompt class explains"
        failing.append((SEVERITY_RANK[u.severity], -len(classes), u.plc_code, reason))

    counted_scores = [c[2] for c, a in zip(candidates, accepted, strict=True) if a]
    all_scores = [c[2] for c in candidates]
    score = max(counted_scores or all_scores or [0.0])
    if not failing:
        return Verdict(True, OK_CODE, float(score), [], accepted)
    failing.sort(reverse=True)
    return Verdict(False, failing[0][2], float(score), [f[3] for f in failing], accepted)
