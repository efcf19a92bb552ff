"""Product recipes: everything product-specific, as a folder of data.

`recipes/<product>/recipe.yaml` holds identity, optics (mm per pixel, ROI), the defect
classes with their decision rules, the unknown-defect rule, and where the prompt bank
(`prompts/`, COCO-style) and the good parts (`normal/`) live. Loading validates all of it
and computes a content hash over every file, so each result can name exactly which
recipe judged it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from inspector.core.coco import decode_segmentation
from inspector.core.image_header import ImageHeaderError, ImageTooLarge, check_image
from inspector.core.strict import StrictModel
from inspector.core.validation import (
    InvalidFile,
    _line_of,
    format_errors,
    load_yaml,
    require_unique,
    validate_file,
)
from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.registry import KINDS, params_model, unknown_params_model

TopicSafe = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# 0 is OK and 65535 "could not be inspected" (inspector.core.result.ERROR_CODE):
# never a class's
PlcCode = Annotated[int, Field(ge=1, le=65534)]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DefectClass(StrictModel):
    """Decision rule for one defect kind."""

    name: TopicSafe
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_area_mm2: Annotated[float, Field(ge=0)] = 0.0
    max_count: Annotated[int, Field(ge=0)] = 0  # parts with more than this many are NG
    severity: Literal["minor", "major", "critical"] = "major"
    plc_code: PlcCode


class UnknownRule(StrictModel):
    """Regions far from every good-part reference and unexplained by a prompt class."""

    enabled: bool = True
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_area_mm2: Annotated[float, Field(ge=0)] = 0.0
    plc_code: PlcCode = 99
    severity: Literal["minor", "major", "critical"] = "major"
    target_false_alarm_rate: Annotated[float, Field(gt=0, lt=1)] = 0.01
    # inspector.inference.unknown.UnknownParams
    params: dict[str, Any] = Field(default_factory=dict)


class DetectorSettings(StrictModel):
    """Which detector judges the parts. `kind` left out: the visual-prompt detector when
    the prompt bank has examples (no retraining for new defect kinds), else the
    training-free texture detector; load_recipe resolves it. `match` is the training-free
    prompt matcher (inspector/inference/detectors/match.py) for products the trained model has not
    seen."""

    kind: Literal[tuple(KINDS)] | None = None  # type: ignore[valid-type]
    # checked by load_recipe against the kind's own model (detectors/registry.py)
    params: dict[str, Any] = Field(default_factory=dict)


class Recipe(StrictModel):
    """recipe.yaml of one product; `folder` and `sha256` are set by load_recipe."""

    id: TopicSafe
    rev: Annotated[int, Field(ge=1)]
    product: str
    mm_per_px: Annotated[float, Field(gt=0)] = 1.0
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h on the calibrated frame
    camera_features: dict[str, Any] = Field(default_factory=dict)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    classes: list[DefectClass]
    unknown: UnknownRule = Field(default_factory=UnknownRule)
    prompts: Path = Path("prompts/prompts.json")  # COCO-style file, relative to the folder
    normal: Path = Path("normal")  # folder of good-part images, relative to the folder

    folder: Path | None = Field(default=None, exclude=True)
    sha256: str = Field(default="", exclude=True)

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, v: list[DefectClass]) -> list[DefectClass]:
        names = [c.name for c in v]
        require_unique(names, "class names")
        if "unknown" in names:
            raise ValueError("'unknown' is reserved for the unknown-defect rule")
        codes = [str(c.plc_code) for c in v]
        require_unique(codes, "PLC codes (a PLC tells defects apart by them)")
        return v

    @model_validator(mode="after")
    def _unknown_code_own(self) -> Recipe:
        """The unknown-defect rule's code must differ from every class's."""
        if self.unknown.enabled:
            clash = [c.name for c in self.classes if c.plc_code == self.unknown.plc_code]
            if clash:
                raise ValueError(f"unknown.plc_code {self.unknown.plc_code} is also the code "
                                 f"of class {clash[0]!r}; PLC codes must be unique")
        return self

    @field_validator("prompts", "normal")
    @classmethod
    def _relative_inside(cls, v: Path) -> Path:
        if v.is_absolute() or ".." in v.parts:
            raise ValueError(outside(Path("."), v))
        return v

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, v):
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("roi must be x, y >= 0 and w, h > 0")
        return v

    @model_validator(mode="after")
    def _files_exist(self, info: ValidationInfo) -> Recipe:
        file = (info.context or {}).get("file")
        if file is None:
            return self
        folder = Path(file).parent
        for name in ("prompts", "normal"):
            problem = outside(folder, getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")
        if not (folder / self.prompts).is_file():
            raise ValueError(f"prompts: file not found: {folder / self.prompts}")
        if not (folder / self.normal).is_dir():
            raise ValueError(f"normal: folder not found: {folder / self.normal}")
        return self

    def class_rule(self, name: str) -> DefectClass | None:
        return next((c for c in self.classes if c.name == name), None)

    @property
    def ref(self) -> dict:
        """`{id, rev, sha256}` as published in results and on the `state` topic."""
        return {"id": self.id, "rev": self.rev, "sha256": self.sha256}


def outside(folder: Path, rel: Path | str, base: Path | None = None) -> str | None:
    """Why `rel` does not name something inside `folder`, or None.

    Why: a recipe is closed. Every file it uses lies in its folder, so copying the folder
    copies the recipe and its sha256 covers every byte that judges a part; absolute paths,
    `..` and symlinks that lead out are refused. `rel` is relative to `base` (default
    `folder`).
    """
    rel = Path(rel)
    if rel.is_absolute():
        return f"{rel} is an absolute path; recipe paths are relative to the recipe folder"
    if ".." in rel.parts:
        return f"{rel} leads out of the recipe folder (..)"
    target = (base or folder) / rel
    try:
        target.resolve().relative_to(folder.resolve())
    except ValueError:
        return f"{rel} resolves to {target.resolve()}, outside the recipe folder"
    return None


def recipe_file(path: Path) -> Path:
    """Accept a recipe folder or its recipe.yaml."""
    path = Path(path)
    return path / "recipe.yaml" if path.is_dir() else path


def load_recipe(path: Path) -> Recipe:
    """Validate a recipe folder, its prompt bank and good parts; raise InvalidFile."""
    file = recipe_file(path)
    recipe = validate_file(file, Recipe)
    recipe.folder = file.parent
    errors = _check_prompt_bank(recipe) + _check_normals_closed(recipe)
    if errors:
        raise InvalidFile(file, errors)
    if recipe.detector.kind is None:
        recipe.detector.kind = "prompt" if _count_prompts(recipe) else "texture"
    errors = _params_errors(recipe, file)
    if errors:
        raise InvalidFile(file, errors)
    recipe.sha256 = content_hash(recipe.folder)
    return recipe


def _params_errors(recipe: Recipe, file: Path) -> list[str]:
    """`detector.params` checked against the model of the (resolved) kind and
    `unknown.params` against the good-part branch's, with file, line and field: a misspelt
    parameter is rejected here, not when the detector is built."""
    checks = [(("detector", "params"), params_model(recipe.detector.kind), recipe.detector.params),
              (("unknown", "params"), unknown_params_model(), recipe.unknown.params)]
    errors, node = [], None
    for where, model, params in checks:
        try:
            model.model_validate(params)
        except ValidationError as exc:
            if node is None:
                node = load_yaml(file)[1]
            errors += format_errors(file, exc, node, prefix=where)
    return errors


def content_hash(folder: Path) -> str:
    """sha256 over every file of the recipe (names and bytes), generated caches excluded."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.parts[0] != "cache":
            h.update(str(rel.as_posix()).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def _json_lines(text: str) -> Callable[[tuple], int | None]:
    """Line of a path (`("annotations", 3, "bbox")`) in a JSON text, for error messages.

    JSON is YAML, and the YAML composer keeps line marks; composed only when needed.
    """
    node: list = []

    def line(loc: tuple) -> int | None:
        if not node:
            try:
                node.append(yaml.compose(text, Loader=getattr(yaml, "CSafeLoader",
                                                              yaml.SafeLoader)))
            except yaml.YAMLError:
                node.append(None)
        return _line_of(node[0], loc) if node[0] is not None else None

    return line


def _check_prompt_bank(recipe: Recipe) -> list[str]:
    """Every prompt annotation must name a recipe class, a readable image and a sane box.

    Each error reads `file:line: annotations[n].field: message`.
    """
    file = recipe.folder / recipe.prompts
    try:
        text = file.read_text(encoding="utf-8")
        coco = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{file}:{exc.lineno}: cannot read prompt bank: {exc.msg}"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{file}: cannot read prompt bank: {exc}"]
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k, []), list) for k in ("images", "annotations", "categories")
    ):
        return [f"{file}:1: (top level): expected an object with lists images, annotations, "
                "categories"]
    line_of = _json_lines(text)

    def where(*loc) -> str:
        line = line_of(loc)
        return f"{file}:{line}" if line else str(file)

    errors = []
    for key in ("images", "annotations", "categories"):
        for n, item in enumerate(coco.get(key, [])):
            if not isinstance(item, dict):
                errors.append(f"{where(key, n)}: {key}[{n}]: expected an object")
    if errors:
        return errors
    cats = {c.get("id"): c.get("name") for c in coco.get("categories", [])}
    images = {i.get("id"): i for i in coco.get("images", [])}
    names = {c.name for c in recipe.classes}
    seen_ids = set()
    for n, ann in enumerate(coco.get("annotations", [])):
        ref = f"annotations[{n}]"
        pid = str(ann.get("prompt_id", ann.get("id")))
        if pid in seen_ids:
            errors.append(f"{where('annotations', n, 'prompt_id')}: {ref}.prompt_id: "
                          f"duplicate prompt_id {pid!r}")
        seen_ids.add(pid)
        cname = cats.get(ann.get("category_id"))
        if cname is None:
            errors.append(f"{where('annotations', n, 'category_id')}: {ref}.category_id: "
                          f"unknown category {ann.get('category_id')!r}")
        elif cname not in names:
            errors.append(f"{where('annotations', n, 'category_id')}: {ref}.category_id: "
                          f"class {cname!r} is not in the recipe's classes")
        errors += _prompt_image_errors(recipe, file, where, images, n, ann)
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int | float) for v in bbox) and bbox[2] > 0 and bbox[3] > 0):
            errors.append(f"{where('annotations', n, 'bbox')}: {ref}.bbox: must be "
                          f"[x, y, w, h] with w, h > 0 (got {bbox!r})")
    return errors


def _prompt_image_errors(recipe: Recipe, file: Path, where: Callable[..., str], images: dict,
                         n: int, ann: dict) -> list[str]:
    """Annotation `n`'s image is listed, a file inside the recipe, and within the size caps."""
    ref = f"annotations[{n}]"
    img = images.get(ann.get("image_id"))
    if img is None:
        return [f"{where('annotations', n, 'image_id')}: {ref}.image_id: "
                f"no image with id {ann.get('image_id')!r}"]
    if outside(recipe.folder, str(img.get("file_name", "")), file.parent):
        i = list(images).index(ann.get("image_id"))
        return [f"{where('images', i, 'file_name')}: images[{i}].file_name: "
                + str(outside(recipe.folder, str(img.get("file_name", "")), file.parent))]
    if not (file.parent / str(img.get("file_name", ""))).is_file():
        return [f"{where('annotations', n, 'image_id')}: {ref}: image file not "
                f"found: {file.parent / str(img.get('file_name'))}"]
    try:
        check_image(file.parent / str(img.get("file_name")))
    except ImageTooLarge as exc:
        i = list(images).index(ann.get("image_id"))
        return [f"{where('images', i, 'file_name')}: images[{i}].file_name: {exc}"]
    except ImageHeaderError:
        pass  # recipe validate decodes every image and says so
    return []


def _check_normals_closed(recipe: Recipe) -> list[str]:
    """Good-part images must be files inside the folder (no symlink out) within the caps."""
    folder = recipe.folder / recipe.normal
    errors = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        problem = outside(recipe.folder, p.relative_to(recipe.folder))
        if problem:
            errors.append(f"{p}: normal: {problem}")
            continue
        try:
            check_image(p)
        except ImageTooLarge as exc:  # an unreadable one is recipe validate's to report
            errors.append(f"{p}: normal: {exc}")
        except ImageHeaderError:
            pass
    return errors


def _count_prompts(recipe: Recipe) -> int:
    """Number of examples in the (already checked) prompt bank."""
    coco = json.loads((recipe.folder / recipe.prompts).read_text(encoding="utf-8"))
    return len(coco.get("annotations", []))


def read_gray(path: Path) -> np.ndarray:
    """Decode one recipe image as 8-bit gray; the header is checked against the caps first."""
    try:
        check_image(path)
    except ImageTooLarge as exc:
        raise InvalidFile(path, [str(exc)]) from None
    except ImageHeaderError:
        raise InvalidFile(path, [f"{path}: not a readable image (no PNG, JPEG, BMP or TIFF "
                                 "header)"]) from None
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InvalidFile(path, [f"{path}: not a readable image"])
    return img


def load_prompts(recipe: Recipe) -> list[PromptExample]:
    """The prompt bank as PromptExamples (masks decoded from polygons or RLE when given)."""

    file = recipe.folder / recipe.prompts
    coco = json.loads(file.read_text(encoding="utf-8"))
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    images = {i["id"]: i for i in coco["images"]}
    cache: dict[int, np.ndarray] = {}
    out = []
    for ann in coco.get("annotations", []):
        info = images[ann["image_id"]]
        if ann["image_id"] not in cache:
            cache[ann["image_id"]] = read_gray(file.parent / info["file_name"])
        img = cache[ann["image_id"]]
        h, w = img.shape[:2]
        mask = decode_segmentation(ann.get("segmentation"), h, w)
        out.append(
            PromptExample(
                prompt_id=str(ann.get("prompt_id", ann["id"])),
                cls=cats[ann["category_id"]],
                image=img,
                bbox=tuple(float(v) for v in ann["bbox"]),
                mask=mask,
            )
        )
    return out


def load_normals(recipe: Recipe) -> list[np.ndarray]:
    """The recipe's good-part images, mono, in file name order."""
    folder = recipe.folder / recipe.normal
    return [read_gray(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
