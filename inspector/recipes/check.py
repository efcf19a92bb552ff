"""Deep check of a recipe for `inspector recipe validate`: every image opened.

load_recipe() checks structure and that files exist, cheaply enough for every switch;
this also decodes every prompt and good-part image, checks sizes against the bank and
each other, boxes against their images, and masks; and it warns about classes that no
prompt example describes. Errors read `file[:line]: field: message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2

from inspector.core.coco import decode_segmentation
from inspector.core.validation import InvalidFile
from inspector.recipes.prompt_bank import PromptBank
from inspector.recipes.recipe import IMAGE_SUFFIXES, Recipe, load_recipe


@dataclass
class CheckReport:
    """What check_recipe found: the recipe (None if it does not load), errors, warnings."""

    recipe: Recipe | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_recipe(path: Path) -> CheckReport:
    """load_recipe() plus image-level checks; never raises for a bad recipe."""
    try:
        recipe = load_recipe(path)
    except InvalidFile as exc:
        return CheckReport(None, list(exc.errors))
    report = CheckReport(recipe)
    _check_model(recipe, report)
    shapes = _check_normals(recipe, report)
    _check_prompts(recipe, report, shapes)
    return report


def _prompt_params(kind: str | None, params: dict, where: tuple = ()
                   ) -> list[tuple[tuple, dict]]:
    """(path under detector.params, params) of each visual-prompt detector the recipe's
    detector runs: itself, or any detector nested in its params (a `select` candidate, a
    `consensus` member, at any depth)."""
    from inspector.inference.detectors.registry import NestedDetector, params_model

    if kind == "prompt":
        return [(where, params)]
    if kind is None:
        return []
    out = []
    for name, value in params_model(kind).parse(params):  # type: ignore[attr-defined]
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, v in items:
            if isinstance(v, NestedDetector):
                at = (*where, name, *(() if i is None else (i,)), "params")
                out += _prompt_params(v.kind, v.params, at)
    return out


def _check_model(recipe: Recipe, report: CheckReport) -> None:
    """The prompt detector's model folder exists and every graph matches its pin."""
    from inspector.core.validation import line_of, load_yaml
    from inspector.inference.detectors.prompt import PromptParams, resolve_model
    from inspector.inference.runtimes.base import BackendError, graph_paths

    file = recipe.folder / "recipe.yaml"
    for where, params in _prompt_params(recipe.detector.kind, recipe.detector.params):
        try:
            graph_paths(resolve_model(PromptParams.parse(params).model))
        except (BackendError, ValueError, OSError) as exc:
            _, node = load_yaml(file)
            path = ("detector", "params", *where, "model")
            field = ".".join(str(v) for v in path)
            report.errors.append(f"{file}:{line_of(node, path)}: {field}: {exc}")


def _check_normals(recipe: Recipe, report: CheckReport) -> set[tuple[int, int]]:
    folder = recipe.folder / recipe.normal
    shapes: dict[tuple[int, int], list[str]] = {}
    files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            report.errors.append(f"{p}: normal: not a readable image")
        else:
            shapes.setdefault(img.shape[:2], []).append(p.name)
    if len(shapes) > 1:
        sizes = ", ".join(f"{w}x{h} ({len(v)})" for (h, w), v in shapes.items())
        report.errors.append(f"{folder}: normal: good parts differ in size: {sizes}")
    if recipe.detector.kind == "texture":
        from inspector.inference.detectors.texture import TextureParams

        try:
            need = TextureParams.parse(recipe.detector.params).min_normals
        except ValueError as exc:
            report.errors.append(f"{recipe.folder / 'recipe.yaml'}: {exc}")
            need = 0
        if len(files) < need:
            report.errors.append(f"{folder}: normal: the texture detector needs >= {need} good "
                                 f"parts, found {len(files)}")
    return set(shapes)


def _check_prompts(recipe: Recipe, report: CheckReport, normal_shapes: set) -> None:
    bank = recipe.prompt_bank()
    sizes = _check_prompt_images(recipe, bank, report, normal_shapes)
    _check_annotations(bank, report, sizes)
    described = {bank.class_of(a) for a in bank.annotations}
    for c in recipe.classes:
        if c.name not in described:
            report.warnings.append(f"class {c.name!r} has no prompt example: its defects "
                                   "can only be reported as unknown")


def _check_prompt_images(recipe: Recipe, bank: PromptBank, report: CheckReport,
                         normal_shapes: set) -> dict:
    """Decode every annotated image, check its stated and good-part size; return sizes."""
    sizes = {}
    used = {a.image_id for a in bank.annotations}
    for info in bank.images:
        if info.id not in used:
            continue
        n, p = info._index, bank.path(info)
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            report.errors.append(f"{bank.where('images', n, 'file_name')}: images[{n}]."
                                 f"file_name: not a readable image: {p}")
            continue
        h, w = img.shape[:2]
        sizes[info.id] = (h, w)
        said = (info.width, info.height)
        if said != (None, None) and said != (w, h):
            report.errors.append(f"{bank.where('images', n)}: images[{n}]: width/height say "
                                 f"{said[0]}x{said[1]}, the file is {w}x{h}")
        if recipe.detector.kind == "texture" and normal_shapes and (h, w) not in normal_shapes:
            (gh, gw), = list(normal_shapes)[:1]
            report.errors.append(f"{bank.where('images', n)}: images[{n}]: {p.name} is {w}x{h}, "
                                 f"the good parts are {gw}x{gh}")
    return sizes


def _check_annotations(bank: PromptBank, report: CheckReport, sizes: dict) -> None:
    """Boxes lie inside their decoded image and segmentations decode to a non-empty mask."""
    for ann in bank.annotations:
        shape = sizes.get(ann.image_id)
        if shape is None:
            continue
        h, w = shape
        n = ann._index
        x, y, bw, bh = ann.bbox
        if x < 0 or y < 0 or x + bw > w + 0.5 or y + bh > h + 0.5:
            report.errors.append(f"{bank.where('annotations', n, 'bbox')}: annotations[{n}].bbox: "
                                 f"{_plain(ann.bbox)} reaches outside the {w}x{h} image")
        if ann.segmentation:
            try:
                _check_segmentation(ann.segmentation, h, w)
            except (TypeError, ValueError, AttributeError) as exc:
                report.errors.append(f"{bank.where('annotations', n, 'segmentation')}: "
                                     f"annotations[{n}].segmentation: {exc}")


def _plain(box: tuple[float, ...]) -> list:
    """A box as its file wrote it (whole numbers without `.0`)."""
    return [int(v) if float(v).is_integer() else v for v in box]


def _check_segmentation(seg, h: int, w: int) -> None:
    """Raise unless `seg` (polygons or RLE) decodes to a non-empty mask of the image size."""
    if not decode_segmentation(seg, h, w).any():
        raise ValueError("empty mask")
