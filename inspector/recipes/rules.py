"""Per-class thresholds and minimum areas changed at run time, saved as a new rev.

Used by the station page and by `cmd/thresholds` over MQTT; the page's preview of a
change is inspector.decision.rejudge. Saving edits recipe.yaml (comments kept) as rev + 1
through the same all-or-nothing edit as `inspector recipe add-prompt`; the caller then
switches to it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from inspector.recipes.files import RecipeEdit, edit_yaml
from inspector.recipes.recipe import DefectClass, Recipe, load_recipe, recipe_file


class Rule(BaseModel):
    """New values for one class (None: keep the recipe's)."""

    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    min_area_mm2: Annotated[float, Field(ge=0)] | None = None


class RuleChange(BaseModel):
    """`{"classes": {"scratch": {"threshold": 0.4}}}`."""

    classes: dict[str, Rule]


def changed_classes(recipe: Recipe, change: RuleChange) -> list[DefectClass]:
    """The recipe's classes with `change` applied (unchanged fields kept)."""
    out = []
    for c in recipe.classes:
        new = change.classes.get(c.name)
        update = new.model_dump(exclude_none=True) if new is not None else {}
        out.append(c.model_copy(update=update))
    return out


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
