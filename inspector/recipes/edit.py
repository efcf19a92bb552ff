"""Create a recipe and grow its prompt bank: `inspector recipe new | add-prompt`.

`add_prompt` is the operator's loop: a part was judged wrongly, so one defect on its
image becomes a new prompt example (box, optional mask), of a known class or of a new
one (which then also gets a decision rule with a PLC code in recipe.yaml). Every edit
bumps the recipe's `rev`, is checked completely before anything is written, and is
applied all-or-nothing (inspector.recipes.files); afterwards the recipe still loads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspector.core.validation import InvalidFile
from inspector.recipes.files import RecipeEdit, edit_yaml
from inspector.recipes.recipe import IMAGE_SUFFIXES, Recipe, load_recipe, recipe_file

CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class NewClass:
    """Decision rule for a class that an edit adds to recipe.yaml."""

    name: str
    plc_code: int
    threshold: float = 0.5
    min_area_mm2: float = 0.0
    max_count: int = 0
    severity: str = "major"

    def as_yaml(self) -> dict:
        return {"name": self.name, "threshold": self.threshold,
                "min_area_mm2": self.min_area_mm2, "max_count": self.max_count,
                "severity": self.severity, "plc_code": self.plc_code}


@dataclass
class EditSummary:
    """What an edit did, for the CLI to print."""

    folder: Path
    rev: int
    prompt_ids: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # files added to prompts/
    notes: list[str] = field(default_factory=list)


def new_recipe(folder: Path, recipe_id: str, product: str, classes: list[NewClass],
               mm_per_px: float = 1.0, normals: list[Path] | None = None) -> Recipe:
    """Write a new recipe folder (rev 1, an empty prompt bank, good parts copied in)."""
    folder = Path(folder)
    if recipe_file(folder).exists():
        raise InvalidFile(recipe_file(folder), [f"{recipe_file(folder)}: already exists"])
    errors = [f"{p}: not a readable image" for p in normals or []
              if cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is None]
    if errors:
        raise InvalidFile(folder, errors)
    doc = {
        "id": recipe_id, "rev": 1, "product": product, "mm_per_px": mm_per_px,
        # no kind: texture while the prompt bank is empty, `select` once it has examples
        # (load_recipe resolves it), so adding prompts is all it takes to use them
        "detector": {"params": {}},
        "classes": [c.as_yaml() for c in classes],
        "unknown": {"enabled": True, "threshold": 0.6, "plc_code": 99},
        "prompts": "prompts/prompts.json", "normal": "normal",
    }
    bank = {"images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": c.name} for i, c in enumerate(classes)]}
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "normal").mkdir(exist_ok=True)
    try:
        with RecipeEdit(folder) as ed:
            for p in normals or []:
                ed.write_bytes(folder / "normal" / Path(p).name, Path(p).read_bytes())
            ed.write_json(folder / "prompts" / "prompts.json", bank)
            text = "# Written by `inspector recipe new`; edit freely.\n" + yaml.safe_dump(
                doc, sort_keys=False)
            ed.write_bytes(recipe_file(folder), text.encode())
            ed.commit(lambda: load_recipe(folder))
    except BaseException:
        if created:  # leave no half-made folder behind
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return load_recipe(folder)


# --- shared by add-prompt and import-coco ---------------------------------------------
def read_bank(recipe: Recipe) -> dict:
    """The recipe's prompt bank as parsed COCO JSON, for editing.

    Why raw JSON here: an edit appends to the file and writes it back, and must keep every
    key it does not know (info, licenses, area, ...) as it was; reading is PromptBank's.
    """
    return json.loads((recipe.folder / recipe.prompts).read_text(encoding="utf-8"))


def next_prompt_id(cls: str, taken: set[str]) -> str:
    """`<class>-<n>` after the highest n in use: ids are never reused or renumbered."""
    nums = [int(m.group(1)) for t in taken if (m := re.fullmatch(re.escape(cls) + r"-(\d+)", t))]
    n = max(nums, default=0) + 1
    while f"{cls}-{n}" in taken:
        n += 1
    return f"{cls}-{n}"


def taken_prompt_ids(bank: dict) -> set[str]:
    """The prompt ids in use in a bank (an example's id stands in for a missing prompt_id)."""
    return {str(a.get("prompt_id", a.get("id"))) for a in bank.get("annotations", [])}


class ImageNames:
    """File names in a prompt bank's folder, so that equal bytes share one file."""

    def __init__(self, folder: Path, bank: dict) -> None:
        self.folder = folder
        self.by_digest: dict[bytes, str] = {}
        for img in bank.get("images", []):
            p = folder / str(img.get("file_name", ""))
            if p.is_file():
                self.by_digest.setdefault(hashlib.sha256(p.read_bytes()).digest(),
                                          str(img["file_name"]))
        self.taken = {str(i.get("file_name")) for i in bank.get("images", [])}

    def name_for(self, name: str, data: bytes) -> tuple[str, bool]:
        """(file name, True) for bytes new to the bank, (existing name, False) otherwise."""
        digest = hashlib.sha256(data).digest()
        if digest in self.by_digest:
            return self.by_digest[digest], False
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        candidate, n = f"{stem}{suffix}", 1
        while candidate in self.taken or (self.folder / candidate).exists():
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self.taken.add(candidate)
        self.by_digest[digest] = candidate
        return candidate, True


def class_changes(recipe: Recipe, wanted: list[str], new: dict[str, NewClass]
                  ) -> tuple[list[NewClass], list[str]]:
    """Classes to add to recipe.yaml for `wanted` names, and errors for the rest."""
    known = {c.name for c in recipe.classes}
    add, errors = [], []
    for name in dict.fromkeys(wanted):
        if name in known:
            continue
        if not CLASS_NAME.match(name) or name == "unknown":
            errors.append(f"class {name!r}: not a valid class name (letters, digits, _ and -; "
                          "'unknown' is reserved)")
        elif name not in new:
            errors.append(f"class {name!r} is not in {recipe_file(recipe.folder)}'s classes: "
                          f"give it a PLC code (--plc-code) to add it")
        else:
            add.append(new[name])
    return add, errors


def stage_recipe_yaml(ed: RecipeEdit, recipe: Recipe, add: list[NewClass]) -> int:
    """Stage recipe.yaml with `rev` + 1 and the new classes; returns the new rev."""
    file = recipe_file(recipe.folder)
    rev = recipe.rev + 1

    def change(doc) -> None:
        doc["rev"] = rev
        for c in add:
            doc["classes"].append(c.as_yaml())

    ed.write_bytes(file, edit_yaml(file.read_text(encoding="utf-8"), change).encode("utf-8"))
    return rev


def category_id(bank: dict, name: str) -> int:
    """The bank's category id for class `name`, adding the category if needed."""
    for c in bank["categories"]:
        if c.get("name") == name:
            return int(c["id"])
    cid = max((int(c["id"]) for c in bank["categories"]), default=0) + 1
    bank["categories"].append({"id": cid, "name": name})
    return cid


def next_id(items: list[dict]) -> int:
    """The next free integer id for a COCO list: one above the highest (1 when empty)."""
    return max((int(i.get("id", 0)) for i in items), default=0) + 1


# --- add-prompt -----------------------------------------------------------------------
def _good_part_shape(recipe: Recipe) -> tuple[int, int] | None:
    folder = recipe.folder / recipe.normal
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            return None if img is None else img.shape[:2]
    return None


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise InvalidFile(path, [f"{path}: --mask: not a readable image"])
    if m.shape != shape:
        raise InvalidFile(path, [f"{path}: --mask: size {m.shape[1]}x{m.shape[0]} differs from "
                                 f"the image's {shape[1]}x{shape[0]}"])
    if not (m > 0).any():
        raise InvalidFile(path, [f"{path}: --mask: no defect pixels (all zero)"])
    return m > 0


def add_prompt(
    folder: Path,
    image: Path,
    box: tuple[float, float, float, float],
    cls: str,
    mask: Path | None = None,
    new_class: NewClass | None = None,
    prompt_id: str | None = None,
    frame: bool = False,
) -> EditSummary:
    """Add one example to the prompt bank of the recipe in `folder` (rev + 1).

    `frame`: `image` is a raw camera frame and `box`/`mask` are in frame coordinates (as
    in a result); it is cut to the recipe's ROI first, like the pipeline does.
    Raises InvalidFile naming the file and the problem; then nothing has changed.
    """
    from pycocotools import mask as mask_utils

    from inspector.preprocess.frame import preprocess

    recipe = load_recipe(folder)
    image = Path(image)
    data = image.read_bytes() if image.is_file() else b""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if img is None:
        raise InvalidFile(image, [f"{image}: not a readable image" if data or image.is_file()
                                  else f"{image}: file not found"])
    m = _read_mask(Path(mask), img.shape[:2]) if mask is not None else None
    notes = []
    x, y, w, h = (float(v) for v in box)
    if frame and recipe.roi is not None:
        pre = preprocess(img, recipe.roi)
        ox, oy = pre.offset
        img, x, y = pre.image, x - ox, y - oy
        if m is not None:
            m = m[oy:oy + img.shape[0], ox:ox + img.shape[1]]
        data = cv2.imencode(".png", img)[1].tobytes()
        image = image.with_suffix(".png")
        notes.append(f"cut to the recipe's ROI {recipe.roi}; box now {[x, y, w, h]}")
    H, W = img.shape[:2]
    where = f"{image}: --box {box}"
    if w <= 0 or h <= 0:
        raise InvalidFile(image, [f"{where}: width and height must be > 0"])
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise InvalidFile(image, [f"{where}: reaches outside the {W}x{H} image"])
    if m is not None and not m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))].any():
        raise InvalidFile(image, [f"{where}: the mask has no pixel inside the box"])
    shape = _good_part_shape(recipe)
    if shape is not None and shape != (H, W):
        raise InvalidFile(image, [f"{image}: size {W}x{H} differs from the recipe's good parts "
                                  f"{shape[1]}x{shape[0]}" + ("" if frame else
                                  " (a raw camera frame? use --frame)")])
    add, errors = class_changes(recipe, [cls], {new_class.name: new_class} if new_class else {})
    if new_class is not None and not add and not errors:
        errors.append(f"class {cls!r} exists already; --plc-code and the other rule options "
                      "are only for a new class (edit recipe.yaml to change a rule)")
    if errors:
        raise InvalidFile(recipe_file(recipe.folder), errors)

    bank = read_bank(recipe)
    taken = taken_prompt_ids(bank)
    pid = prompt_id or next_prompt_id(cls, taken)
    if pid in taken:
        raise InvalidFile(recipe.folder / recipe.prompts,
                          [f"{recipe.folder / recipe.prompts}: prompt_id {pid!r} is taken"])
    bank_dir = (recipe.folder / recipe.prompts).parent
    name, is_new = ImageNames(bank_dir, bank).name_for(
        image.name if image.suffix.lower() in IMAGE_SUFFIXES else image.stem + ".png", data)
    if is_new:
        image_id = next_id(bank["images"])
        bank["images"].append({"id": image_id, "file_name": name, "width": W, "height": H})
    else:
        image_id = next(int(i["id"]) for i in bank["images"] if i["file_name"] == name)
    ann = {"id": next_id(bank["annotations"]), "image_id": image_id,
           "category_id": category_id(bank, cls), "bbox": [x, y, w, h], "area": w * h,
           "iscrowd": 0, "prompt_id": pid}
    if m is not None:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        ann["segmentation"] = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
        ann["area"] = int(m.sum())
    bank["annotations"].append(ann)

    with RecipeEdit(recipe.folder) as ed:
        if is_new:
            ed.write_bytes(bank_dir / name, data)
        rev = stage_recipe_yaml(ed, recipe, add)
        ed.write_json(recipe.folder / recipe.prompts, bank)
        ed.commit(lambda: load_recipe(recipe.folder))
    return EditSummary(recipe.folder, rev, [pid], [c.name for c in add],
                       [name] if is_new else [], notes)
