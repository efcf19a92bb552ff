"""Deep check of a recipe for `inspector recipe validate`: every image opened.

load_recipe() checks structure and that files exist, cheaply enough for every switch;
this also decodes every prompt and good-part image, checks sizes against the bank and
each other, boxes against their images, and masks; and it warns about classes that no
prompt example describes. Errors read `file[:line]: field: message`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from inspector.core.coco import decode_segmentation
from inspector.core.validation import InvalidFile
from inspector.recipes.recipe import IMAGE_SUFFIXES, Recipe, _json_lines, load_recipe


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


def _check_model(recipe: Recipe, report: CheckReport) -> None:
    """The prompt detector's model folder exists and every graph matches its pin."""
    if recipe.detector.kind != "prompt":
        return
    from inspector.core.validation import line_of, load_yaml
    from inspector.inference.detectors.prompt import PromptParams, resolve_model
    from inspector.inference.runtimes.base import BackendError, graph_paths

    file = recipe.folder / "recipe.yaml"
    try:
        graph_paths(resolve_model(PromptParams.parse(recipe.detector.params).model))
    except (BackendError, ValueError, OSError) as exc:
        _, node = load_yaml(file)
        line = line_of(node, ("detector", "params", "model"))
        report.errors.append(f"{file}:{line}: detector.params.model: {exc}")


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
    file = recipe.folder / recipe.prompts
    text = file.read_text(encoding="utf-8")
    coco = json.loads(text)
    line_of = _json_lines(text)

    def where(*loc) -> str:
        line = line_of(loc)
        return f"{file}:{line}" if line else str(file)

    images = _check_ids(coco, report, where)
    sizes = _check_prompt_images(recipe, report, where, coco, images, normal_shapes)
    _check_annotations(coco, report, where, sizes)
    names = {c.get("id"): c.get("name") for c in coco["categories"]}
    described = {names.get(a.get("category_id")) for a in coco["annotations"]}
    for c in recipe.classes:
        if c.name not in described:
            report.warnings.append(f"class {c.name!r} has no prompt example: its defects "
                                   "can only be reported as unknown")


def _check_ids(coco: dict, report: CheckReport, where: Callable[..., str]) -> dict:
    """Image and category ids are unique; return the images by id with their index."""
    images = {}
    for n, info in enumerate(coco["images"]):
        if info.get("id") in images:
            report.errors.append(f"{where('images', n, 'id')}: images[{n}].id: duplicate "
                                 f"image id {info.get('id')!r}")
        images[info.get("id")] = (n, info)
    cat_ids = [c.get("id") for c in coco["categories"]]
    for n, c in enumerate(coco["categories"]):
        if cat_ids.count(c.get("id")) > 1:
            report.errors.append(f"{where('categories', n, 'id')}: categories[{n}].id: "
                                 f"duplicate category id {c.get('id')!r}")
    return images


def _check_prompt_images(recipe: Recipe, report: CheckReport, where: Callable[..., str],
                         coco: dict, images: dict, normal_shapes: set) -> dict:
    """Decode every annotated image, check its stated and good-part size; return sizes."""
    file = recipe.folder / recipe.prompts
    sizes = {}
    used = {a.get("image_id") for a in coco["annotations"]}
    for iid in used:
        if iid not in images:
            continue  # load_recipe named it already
        n, info = images[iid]
        p = file.parent / str(info.get("file_name"))
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            report.errors.append(f"{where('images', n, 'file_name')}: images[{n}].file_name: "
                                 f"not a readable image: {p}")
            continue
        h, w = img.shape[:2]
        sizes[iid] = (h, w)
        said = (info.get("width"), info.get("height"))
        if said != (None, None) and said != (w, h):
            report.errors.append(f"{where('images', n)}: images[{n}]: width/height say "
                                 f"{said[0]}x{said[1]}, the file is {w}x{h}")
        if recipe.detector.kind == "texture" and normal_shapes and (h, w) not in normal_shapes:
            (gh, gw), = list(normal_shapes)[:1]
            report.errors.append(f"{where('images', n)}: images[{n}]: {p.name} is {w}x{h}, the "
                                 f"good parts are {gw}x{gh}")
    return sizes


def _check_annotations(coco: dict, report: CheckReport, where: Callable[..., str],
                       sizes: dict) -> None:
    """Boxes lie inside their decoded image and segmentations decode to a non-empty mask."""
    for n, ann in enumerate(coco["annotations"]):
        shape = sizes.get(ann.get("image_id"))
        if shape is None:
            continue
        h, w = shape
        x, y, bw, bh = ann["bbox"]
        if x < 0 or y < 0 or x + bw > w + 0.5 or y + bh > h + 0.5:
            report.errors.append(f"{where('annotations', n, 'bbox')}: annotations[{n}].bbox: "
                                 f"{ann['bbox']} reaches outside the {w}x{h} image")
        seg = ann.get("segmentation")
        if seg:
            try:
                _check_segmentation(seg, h, w)
            except (TypeError, ValueError, AttributeError) as exc:
                report.errors.append(f"{where('annotations', n, 'segmentation')}: "
                                     f"annotations[{n}].segmentation: {exc}")


def _check_segmentation(seg, h: int, w: int) -> None:
    """Raise unless `seg` (polygons or RLE) decodes to a non-empty mask of the image size."""
    if not decode_segmentation(seg, h, w).any():
        raise ValueError("empty mask")
