"""Judge recent parts again under proposed rules: the station page's threshold preview.

A result carries every candidate the detector reported, counted or not, with its score and
area in mm², so the verdict under other thresholds follows from it through the same
function the pipeline decides with (`decide_candidates`). Candidates the detector itself
never reported cannot be counted: lowering a threshold below the detector's own floor
shows no change here.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspector.core.result import ERROR_CODE, Result
from inspector.decision.verdict import decide_candidates
from inspector.recipes.recipe import DefectClass, Recipe
from inspector.recipes.rules import RuleChange, changed_classes


def judge(result: Result, recipe: Recipe, classes: Sequence[DefectClass] | None = None) -> str:
    """OK or NG for `result`'s candidates under `classes` (default: the recipe's)."""
    candidates = [(d.cls, d.unknown, d.score, d.area_mm2) for d in result.defects]
    return "OK" if decide_candidates(candidates, recipe, classes).ok else "NG"


def preview(recipe: Recipe, change: RuleChange, results: list[Result]) -> dict:
    """How the recent parts of this recipe would be judged under `change`."""
    unknown = sorted(set(change.classes) - {c.name for c in recipe.classes})
    if unknown:
        return {"ok": False, "error": f"not classes of the recipe: {', '.join(unknown)}"}
    mine = [r for r in results if r.recipe.sha256 == recipe.sha256 and r.code != ERROR_CODE]
    new = changed_classes(recipe, change)
    pairs = [(r.event_id, judge(r, recipe), judge(r, recipe, new)) for r in mine]
    return {"ok": True, "parts": len(mine),
            "ng_before": sum(before == "NG" for _, before, _ in pairs),
            "ng_after": sum(after == "NG" for _, _, after in pairs),
            "to_ng": [e for e, before, after in pairs if before != after and after == "NG"],
            "to_ok": [e for e, before, after in pairs if before != after and after == "OK"]}
