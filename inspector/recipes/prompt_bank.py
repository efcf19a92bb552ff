"""The prompt bank (`prompts/prompts.json`, COCO-style) as one typed model, read in one place.

Why one model: the bank was checked by hand twice (on load and in `recipe validate`) and
read as raw dicts in four places. `PromptBank.read` parses the JSON, validates each image,
category and annotation with pydantic, checks the cross references (ids unique, every
annotation's class in the recipe, its image listed, a file inside the recipe folder within
the size caps) and reports every problem at once as `file:line: field: message`. Everything
after that reads typed fields. Decoding every image is left to `recipe validate`
(recipes/check.py): it is too slow for a switch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from inspector.core.image_header import ImageHeaderError, ImageTooLarge, check_image
from inspector.core.validation import InvalidFile, format_errors, line_of
from inspector.recipes.paths import outside

Id = int | str


def _bbox(value: Any) -> tuple[float, float, float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            and value[2] > 0 and value[3] > 0):
        raise PydanticCustomError("bbox", "must be [x, y, w, h] with w, h > 0")
    return (float(value[0]), float(value[1]), float(value[2]), float(value[3]))


class _Item(BaseModel):
    """One entry of a bank list; other COCO keys (area, iscrowd, ...) are kept as they are."""

    model_config = ConfigDict(extra="allow")
    _index: int = PrivateAttr(-1)  # position in its list, for messages

    @model_validator(mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError("object", "expected an object")
        return value

    @classmethod
    def parse(cls, value: Any, index: int) -> _Item:
        item = cls.model_validate(value)
        item._index = index
        return item


class BankImage(_Item):
    """An image of the bank; `file_name` is relative to the bank's folder."""

    id: Id
    file_name: str
    width: int | None = None
    height: int | None = None


class BankCategory(_Item):
    """A category; its `name` must be one of the recipe's classes when an example uses it."""

    id: Id
    name: str


class BankAnnotation(_Item):
    """One prompt example: a box (and optionally a mask) of a class on an image."""

    id: Id | None = None
    image_id: Id
    category_id: Id
    bbox: Annotated[tuple[float, float, float, float], BeforeValidator(_bbox)]
    segmentation: Any = None
    prompt_id: Id | None = None

    @property
    def pid(self) -> str:
        """The example's name in results and caches (`prompt_id`, else the COCO `id`)."""
        return str(self.prompt_id if self.prompt_id is not None else self.id)


_SECTIONS: dict[str, type[_Item]] = {
    "images": BankImage, "categories": BankCategory, "annotations": BankAnnotation}


class PromptBank(BaseModel):
    """The whole bank: lists of typed items plus the way back to their lines in the file."""

    file: Path
    images: list[BankImage] = []
    categories: list[BankCategory] = []
    annotations: list[BankAnnotation] = []
    _text: str = PrivateAttr("")
    _node: list = PrivateAttr(default_factory=list)  # the composed JSON, once needed
    _broken: dict = PrivateAttr(default_factory=dict)  # ids of items with their own errors
    _by_id: dict = PrivateAttr(default_factory=dict)  # {"images"|"categories": {id: item}}

    @classmethod
    def read(cls, file: Path, classes: set[str] | None = None, root: Path | None = None
             ) -> PromptBank:
        """Parse and check `file`; raise InvalidFile listing every problem.

        `classes` (the recipe's class names) and `root` (the recipe folder, which every
        image must lie in) enable the checks against the recipe.
        """
        file = Path(file)
        try:
            text = file.read_text(encoding="utf-8")
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidFile(file, [f"{file}:{exc.lineno}: cannot read prompt bank: "
                                     f"{exc.msg}"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidFile(file, [f"{file}: cannot read prompt bank: {exc}"]) from None
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k, []), list)
                                                for k in _SECTIONS):
            raise InvalidFile(file, [f"{file}:1: (top level): expected an object with lists "
                                     "images, annotations, categories"])
        bank = cls(file=file)
        bank._text = text
        errors: list[tuple[int, str]] = []
        for key, model in _SECTIONS.items():
            items = []
            for n, value in enumerate(raw.get(key, [])):
                try:
                    items.append(model.parse(value, n))
                except ValidationError as exc:
                    if isinstance(value, dict):  # its references are not errors too
                        bank._broken.setdefault(key, set()).add(str(value.get("id")))
                    errors += [(bank.line(key, n) or 0, e) for e in
                               format_errors(file, exc, bank._tree(), prefix=(key, n))]
            setattr(bank, key, items)
            bank._by_id[key] = {}
            for item in reversed(items):  # the first wins, should ids repeat
                bank._by_id[key][item.id] = item
        errors += bank._duplicate_prompt_ids(raw["annotations"] if "annotations" in raw else [])
        errors += bank._reference_errors(classes)
        if root is not None:
            errors += bank._file_errors(root)
        if errors:
            raise InvalidFile(file, [e for _, e in sorted(errors, key=lambda x: x[0])])
        return bank

    def _tree(self) -> yaml.Node | None:
        """The file as a YAML node tree (JSON is YAML; the composer keeps line marks)."""
        if not self._node:
            try:
                self._node.append(yaml.compose(
                    self._text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
            except yaml.YAMLError:
                self._node.append(None)
        return self._node[0]

    def line(self, *loc: str | int) -> int | None:
        """1-based line of a location such as `("annotations", 3, "bbox")`."""
        tree = self._tree()
        return line_of(tree, loc) if tree is not None else None

    def where(self, *loc: str | int) -> str:
        """`file:line` of a location (just the file when the line is unknown)."""
        line = self.line(*loc)
        return f"{self.file}:{line}" if line else str(self.file)

    def image(self, image_id: Id) -> BankImage | None:
        """The image with this id (the first, should ids repeat)."""
        return self._by_id.get("images", {}).get(image_id)

    def class_of(self, ann: BankAnnotation) -> str | None:
        """The category name of an annotation, or None when its category is not listed."""
        cat = self._by_id.get("categories", {}).get(ann.category_id)
        return cat.name if cat is not None else None

    def path(self, image: BankImage) -> Path:
        """Where an image's file lies (relative names are relative to the bank's folder)."""
        return self.file.parent / image.file_name

    def _error(self, loc: tuple, msg: str) -> tuple[int, str]:
        ref = f"{loc[0]}[{loc[1]}]" + "".join(f".{p}" for p in loc[2:])
        return (self.line(*loc) or 0, f"{self.where(*loc)}: {ref}: {msg}")

    def _reference_errors(self, classes: set[str] | None) -> list[tuple[int, str]]:
        errors = []
        for key, what in (("images", "image"), ("categories", "category")):
            seen: set[Id] = set()
            for item in getattr(self, key):
                if item.id in seen:
                    errors.append(self._error((key, item._index, "id"),
                                              f"duplicate {what} id {item.id!r}"))
                seen.add(item.id)
        for ann in self.annotations:
            n = ann._index
            name = self.class_of(ann)
            broken = str(ann.category_id) in self._broken.get("categories", ())
            if name is None and not broken:
                errors.append(self._error(("annotations", n, "category_id"),
                                          f"unknown category {ann.category_id!r}"))
            elif name is not None and classes is not None and name not in classes:
                errors.append(self._error(("annotations", n, "category_id"),
                                          f"class {name!r} is not in the recipe's classes"))
            if (self.image(ann.image_id) is None
                    and str(ann.image_id) not in self._broken.get("images", ())):
                errors.append(self._error(("annotations", n, "image_id"),
                                          f"no image with id {ann.image_id!r}"))
        return errors

    def _duplicate_prompt_ids(self, raw: list) -> list[tuple[int, str]]:
        """Over the raw list, so that an example with another error still counts."""
        errors, pids = [], set()
        for n, value in enumerate(raw):
            if isinstance(value, dict):
                pid = str(value.get("prompt_id", value.get("id")))
                if pid in pids:
                    errors.append(self._error(("annotations", n, "prompt_id"),
                                              f"duplicate prompt_id {pid!r}"))
                pids.add(pid)
        return errors

    def _file_errors(self, root: Path) -> list[tuple[int, str]]:
        """Each used image is a file inside the recipe folder within the size caps."""
        errors = []
        for ann in self.annotations:
            img = self.image(ann.image_id)
            if img is None:
                continue
            loc = ("images", img._index, "file_name")
            problem = outside(root, img.file_name, self.file.parent)
            if problem:
                errors.append(self._error(loc, problem))
            elif not self.path(img).is_file():
                errors.append(self._error(("annotations", ann._index),
                                          f"image file not found: {self.path(img)}"))
            else:
                try:
                    check_image(self.path(img))
                except ImageTooLarge as exc:
                    errors.append(self._error(loc, str(exc)))
                except ImageHeaderError:
                    pass  # recipe validate decodes every image and says so
        return errors
