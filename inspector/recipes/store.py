"""The recipes folder of a station: find a recipe by name, list what is there.

A recipe is addressed by its folder name under `recipes_dir` (the MQTT contract's
`recipe_id`); a name that is no folder is looked up among the recipes' `id:` fields,
so `demo-part` finds `recipes/demo/`. Names are single path components: a command
can never reach outside the recipes folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inspector.core.validation import InvalidFile, load_yaml
from inspector.recipes.recipe import IMAGE_SUFFIXES, load_recipe, recipe_file

NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


def _declared_id(folder: Path) -> str | None:
    try:
        data, _ = load_yaml(recipe_file(folder))
    except InvalidFile:
        return None
    return str(data.get("id")) if isinstance(data, dict) and "id" in data else None


def find_recipe(recipes_dir: Path, name: str) -> Path:
    """The folder of recipe `name` (folder name, else declared id); FileNotFoundError if none."""
    recipes_dir = Path(recipes_dir)
    if not NAME.match(name or ""):
        raise FileNotFoundError(f"unknown recipe {name!r} (not a valid recipe name)")
    folder = recipes_dir / name
    if recipe_file(folder).is_file():
        return folder
    matches = [f for f in sorted(recipes_dir.iterdir()) if recipe_file(f).is_file()
               and _declared_id(f) == name] if recipes_dir.is_dir() else []
    if len(matches) > 1:
        raise FileNotFoundError(f"recipe id {name!r} is declared by several folders: "
                                f"{', '.join(m.name for m in matches)}; use the folder name")
    if not matches:
        raise FileNotFoundError(f"unknown recipe {name!r} (no {recipe_file(folder)})")
    return matches[0]


@dataclass
class RecipeEntry:
    """One row of `inspector recipe list`."""

    folder: Path
    id: str = ""
    rev: int = 0
    product: str = ""
    classes: int = 0
    prompts: int = 0
    normals: int = 0
    sha256: str = ""
    cache: str = ""  # "fresh", or why the cache would not be used
    error: str = ""  # first validation error; the other fields are then partly empty


def describe(folder: Path) -> RecipeEntry:
    """Validate one recipe folder and summarise it (never raises for a bad recipe)."""
    from inspector.recipes.cache import check, detector_for

    entry = RecipeEntry(folder)
    try:
        recipe = load_recipe(folder)
    except InvalidFile as exc:
        entry.error = exc.errors[0] + (f" (+{len(exc.errors) - 1} more)" if len(exc.errors) > 1
                                       else "")
        entry.id = _declared_id(folder) or ""
        return entry
    entry.id, entry.rev, entry.product = recipe.id, recipe.rev, recipe.product
    entry.classes, entry.sha256 = len(recipe.classes), recipe.sha256
    entry.prompts = len(recipe.prompt_bank().annotations)
    entry.normals = sum(p.suffix.lower() in IMAGE_SUFFIXES
                        for p in (recipe.folder / recipe.normal).iterdir())
    try:
        entry.cache = check(recipe, detector_for(recipe)) or "fresh"
    except ValueError as exc:
        entry.cache = f"detector: {exc}"
    return entry


def list_recipes(recipes_dir: Path) -> list[RecipeEntry]:
    """Every folder under `recipes_dir` that holds a recipe.yaml, valid or not."""
    recipes_dir = Path(recipes_dir)
    if not recipes_dir.is_dir():
        raise FileNotFoundError(f"recipes folder not found: {recipes_dir}")
    return [describe(f) for f in sorted(recipes_dir.iterdir())
            if f.is_dir() and recipe_file(f).is_file()]
