"""Decision: turn detections into a verdict with the recipe's rules.

A detection counts when its score reaches its class threshold and its area reaches the
class minimum (mm²). A part is NG when a class has more counted defects than its
`max_count`, or when any unknown defect counts. The PLC code is that of the most
severe failing rule (ties: the earlier class in the recipe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspector.inference.detectors.base import Detection
from inspector.recipes.recipe import Recipe

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


def decide(detections: list[Detection], recipe: Recipe, mm_per_px: float) -> Verdict:
    """Apply the recipe's rules to one part's detections (see the module docstring)."""
    px_to_mm2 = mm_per_px * mm_per_px
    accepted: list[bool] = []
    counts: dict[str, int] = {}
    for det in detections:
        rule = recipe.unknown if det.unknown else recipe.class_rule(det.cls)
        ok_rule = rule is not None and (not det.unknown or recipe.unknown.enabled)
        counted = (
            ok_rule
            and det.score >= rule.threshold
            and det.area_px * px_to_mm2 >= rule.min_area_mm2
        )
        accepted.append(bool(counted))
        if counted:
            key = "unknown" if det.unknown else det.cls
            counts[key] = counts.get(key, 0) + 1

    failing = []  # (severity rank, order, code, reason)
    for order, cls in enumerate(recipe.classes):
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
        failing.append((SEVERITY_RANK[u.severity], -len(recipe.classes), u.plc_code, reason))

    counted_scores = [d.score for d, a in zip(detections, accepted, strict=True) if a]
    all_scores = [d.score for d in detections]
    score = max(counted_scores or all_scores or [0.0])
    if not failing:
        return Verdict(True, OK_CODE, float(score), [], accepted)
    failing.sort(reverse=True)
    return Verdict(False, failing[0][2], float(score), [f[3] for f in failing], accepted)
