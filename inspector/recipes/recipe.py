"""Product recipes: everything product-specific, as a folder of data.

`recipes/<product>/recipe.yaml` holds identity, optics (mm per pixel, ROI), the defect
classes with their decision rules, the unknown-defect rule, and where the prompt bank
(`prompts/`, COCO-style) and the good parts (`normal/`) live. Loading validates all of it
and computes a content hash over every file, so each result can name exactly which
recipe judged it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from inspector.core.coco import decode_segmentation
from inspector.core.image_header import ImageHeaderError, ImageTooLarge, check_image
from inspector.core.strict import StrictModel
from inspector.core.validation import (
    InvalidFile,
    format_errors,
    load_yaml,
    require_unique,
    validate_file,
)
from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.registry import KINDS, params_model, unknown_params_model
from inspector.recipes.paths import outside
from inspector.recipes.prompt_bank import PromptBank

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
    """Which detector judges the parts. `kind` left out: when the prompt bank has
    examples, `select` (detectors/select.py): at enrolment the training-free matcher
    confirmed by the trained visual-prompt heads of engines/prompt-v3 (`consensus`), the
    heads of engines/prompt-v2 alone and those of prompt-v3 alone (`prompt`) are each
    tried on held-out examples, and the one that finds this product's defects is kept
    (heads alone mostly fail on products they never saw in training); without
    examples, the training-free texture
    detector. load_recipe resolves it."""

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
    bank: PromptBank | None = Field(default=None, exclude=True)  # as read by load_recipe

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

    def prompt_bank(self) -> PromptBank:
        """The prompt bank load_recipe read and checked (read now if this recipe was not
        loaded from its folder)."""
        if self.bank is None:
            assert self.folder is not None, "a recipe without a folder has no prompt bank"
            self.bank = PromptBank.read(self.folder / self.prompts)
        return self.bank

    def class_rule(self, name: str) -> DefectClass | None:
        return next((c for c in self.classes if c.name == name), None)

    @property
    def ref(self) -> dict:
        """`{id, rev, sha256}` as published in results and on the `state` topic."""
        return {"id": self.id, "rev": self.rev, "sha256": self.sha256}


def recipe_file(path: Path) -> Path:
    """Accept a recipe folder or its recipe.yaml."""
    path = Path(path)
    return path / "recipe.yaml" if path.is_dir() else path


def load_recipe(path: Path) -> Recipe:
    """Validate a recipe folder, its prompt bank and good parts; raise InvalidFile."""
    file = recipe_file(path)
    recipe = validate_file(file, Recipe)
    recipe.folder = file.parent
    errors = _check_normals_closed(recipe)
    try:
        recipe.bank = PromptBank.read(recipe.folder / recipe.prompts,
                                      {c.name for c in recipe.classes}, recipe.folder)
    except InvalidFile as exc:
        errors = list(exc.errors) + errors
    if errors:
        raise InvalidFile(file, errors)
    if recipe.detector.kind is None:
        recipe.detector.kind = "select" if recipe.prompt_bank().annotations else "texture"
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
    bank = recipe.prompt_bank()
    cache: dict = {}
    out = []
    for ann in bank.annotations:
        info = bank.image(ann.image_id)
        assert info is not None  # PromptBank.read checked every reference
        if ann.image_id not in cache:
            cache[ann.image_id] = read_gray(bank.path(info))
        img = cache[ann.image_id]
        h, w = img.shape[:2]
        out.append(PromptExample(prompt_id=ann.pid, cls=str(bank.class_of(ann)), image=img,
                                 bbox=ann.bbox, mask=decode_segmentation(ann.segmentation, h, w)))
    return out


def load_normals(recipe: Recipe) -> list[np.ndarray]:
    """The recipe's good-part images, mono, in file name order."""
    folder = recipe.folder / recipe.normal
    return [read_gray(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
