"""Per-class thresholds and minimum areas changed at run time: preview, then save as a new rev.

Used by the station page (preview, save) and by `cmd/thresholds` over MQTT (save).

The preview judges the recent parts of the running recipe again under the proposed rules,
from the candidates their results carry (every detection, counted or not, with its score
and area), so an engineer sees how many verdicts would change before saving. Candidates
the detector itself never reported cannot be counted: lowering a threshold below the
detector's own floor shows no change here. Saving edits recipe.yaml (comments kept) as
rev + 1 through the same all-or-nothing edit as `inspector recipe add-prompt`; the caller
then switches to it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from inspector.core.result import ERROR_CODE, Result
from inspector.recipes.files import RecipeEdit, edit_yaml
from inspector.recipes.recipe import Recipe, load_recipe, recipe_file


class Rule(BaseModel):
    """New values for one class (None: keep the recipe's)."""

    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    min_area_mm2: Annotated[float, Field(ge=0)] | None = None


class RuleChange(BaseModel):
    """`{"classes": {"scratch": {"threshold": 0.4}}}`."""

    classes: dict[str, Rule]


def _rules(recipe: Recipe, change: RuleChange | None) -> dict[str, tuple[float, float, int]]:
    out = {}
    for c in recipe.classes:
        new = change.classes.get(c.name) if change else None
        thr = new.threshold if new and new.threshold is not None else c.threshold
        area = new.min_area_mm2 if new and new.min_area_mm2 is not None else c.min_area_mm2
        out[c.name] = (thr, area, c.max_count)
    return out


def judge(result: Result, recipe: Recipe, rules: dict[str, tuple[float, float, int]]) -> str:
    """OK or NG for `result`'s candidates under `rules` (inspector.decision.verdict's logic)."""
    counts: dict[str, int] = {}
    u = recipe.unknown
    for d in result.defects:
        if d.unknown:
            if u.enabled and d.score >= u.threshold and d.area_mm2 >= u.min_area_mm2:
                counts["unknown"] = counts.get("unknown", 0) + 1
            continue
        if d.cls in rules:
            thr, area, _ = rules[d.cls]
            if d.score >= thr and d.area_mm2 >= area:
                counts[d.cls] = counts.get(d.cls, 0) + 1
    if counts.get("unknown"):
        return "NG"
    return "NG" if any(counts.get(n, 0) > mx for n, (_, _, mx) in rules.items()) else "OK"


def preview(recipe: Recipe, change: RuleChange, results: list[Result]) -> dict:
    """How the recent parts of this recipe would be judged under `change`."""
    unknown = sorted(set(change.classes) - {c.name for c in recipe.classes})
    if unknown:
        return {"ok": False, "error": f"not classes of the recipe: {', '.join(unknown)}"}
    mine = [r for r in results if r.recipe.sha256 == recipe.sha256 and r.code != ERROR_CODE]
    old, new = _rules(recipe, None), _rules(recipe, change)
    to_ng, to_ok = [], []
    for r in mine:
        before, after = judge(r, recipe, old), judge(r, recipe, new)
        if before != after:
            (to_ng if after == "NG" else to_ok).append(r.event_id)
    return {"ok": True, "parts": len(mine),
            "ng_before": sum(judge(r, recipe, old) == "NG" for r in mine),
            "ng_after": sum(judge(r, recipe, new) == "NG" for r in mine),
            "to_ng": to_ng, "to_ok": to_ok}


def save_rules(recipe: Recipe, change: RuleChange) -> int:
    """Write the changed rules as rev + 1 (checked by load_recipe, else nothing changes)."""
    assert recipe.folder is not None
    names = {c.name for c in recipe.classes}
    unknown = sorted(set(change.classes) - names)
    if unknown:
        raise ValueError(f"not classes of the recipe: {', '.join(unknown)}")
    file = recipe_file(recipe.folder)
    current = load_recipe(recipe.folder)
    if current.sha256 != recipe.sha256:
        raise ValueError(f"recipe {recipe.id} changed on disk since it was loaded (now rev "
                         f"{current.rev}); reload the page")
    rev = recipe.rev + 1

    def edit(doc) -> None:
        doc["rev"] = rev
        for c in doc["classes"]:
            new = change.classes.get(c["name"])
            if new is not None and new.threshold is not None:
                c["threshold"] = new.threshold
            if new is not None and new.min_area_mm2 is not None:
                c["min_area_mm2"] = new.min_area_mm2

    with RecipeEdit(recipe.folder) as ed:
        ed.write_bytes(file, edit_yaml(file.read_text(encoding="utf-8"), edit).encode())
        ed.commit(lambda: load_recipe(recipe.folder))
    return rev
