"""Build a recipe's prompt bank from a COCO dataset: `inspector recipe import-coco`.

Per class, up to `per_class` examples are drawn (seeded) from distinct images, as the
evaluation protocol of docs/DESIGN.md draws prompts; their images are copied into the
recipe's prompts folder, and each example gets a stable `prompt_id` (`<class>-<n>`,
numbered after the ids already in the bank, never renumbered). Defect-free images of
the dataset can become the recipe's good parts. The recipe's `rev` goes up by one;
classes new to the recipe need a PLC code. Everything is checked before anything is
written, and the edit is all-or-nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.core.validation import InvalidFile
from inspector.recipes.edit import (
    EditSummary,
    ImageNames,
    NewClass,
    category_id,
    class_changes,
    next_id,
    next_prompt_id,
    read_bank,
    stage_recipe_yaml,
    taken_prompt_ids,
)
from inspector.recipes.files import RecipeEdit
from inspector.recipes.recipe import IMAGE_SUFFIXES, load_recipe


@dataclass
class CocoSource:
    """A COCO file with the folder its `file_name`s are relative to."""

    file: Path
    images_dir: Path
    doc: dict

    @classmethod
    def read(cls, file: Path, images_dir: Path | None = None) -> CocoSource:
        file = Path(file)
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidFile(file, [f"{file}:{exc.lineno}: not valid JSON: {exc.msg}"]) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidFile(file, [f"{file}: cannot read: {exc}"]) from exc
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                                for k in ("images", "annotations", "categories")):
            raise InvalidFile(file, [f"{file}:1: expected a COCO object with lists images, "
                                     "annotations, categories"])
        if images_dir is None:  # the shared datasets keep images/ beside the json
            images_dir = file.parent / "images" if (file.parent / "images").is_dir() \
                else file.parent
        return cls(file, Path(images_dir), doc)


def _pick(coco: CocoSource, names: list[str], per_class: int, seed: int,
          image_ids: set | None) -> list[dict]:
    """Seeded choice of up to `per_class` annotations per class, each from its own image."""
    cat_name = {c["id"]: c["name"] for c in coco.doc["categories"]}
    by_class: dict[str, dict[object, list[dict]]] = {n: {} for n in names}
    for a in coco.doc["annotations"]:
        name = cat_name.get(a.get("category_id"))
        bbox = a.get("bbox")
        if (name in by_class and not a.get("iscrowd") and isinstance(bbox, list)
                and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0
                and (image_ids is None or a.get("image_id") in image_ids)):
            by_class[name].setdefault(a["image_id"], []).append(a)
    rng = np.random.default_rng(seed)
    chosen = []
    for name in names:
        imgs = sorted(by_class[name], key=str)
        for k in rng.permutation(len(imgs))[:per_class]:
            anns = by_class[name][imgs[int(k)]]
            chosen.append(anns[int(rng.integers(len(anns)))])
    return chosen


def import_coco(
    folder: Path,
    coco_file: Path,
    images_dir: Path | None = None,
    classes: list[str] | None = None,
    per_class: int = 4,
    seed: int = 0,
    image_ids: list[int] | None = None,
    new_classes: dict[str, NewClass] | None = None,
    rename: dict[str, str] | None = None,
    normals: int = 0,
    replace: bool = False,
) -> EditSummary:
    """Add seeded prompt examples (and optionally good parts) from a COCO file to a recipe.

    `classes`: category names to take (default: every category with annotations);
    `rename`: COCO name -> recipe class name; `replace`: drop the bank's old examples.
    """
    recipe = load_recipe(folder)
    coco = CocoSource.read(coco_file, images_dir)
    rename = rename or {}
    names = _check_request(coco, classes, rename, per_class)
    add, errors = class_changes(recipe, [rename.get(n, n) for n in names], new_classes or {})
    if errors:
        raise InvalidFile(coco.file, errors)

    chosen = _pick(coco, names, per_class, seed, set(image_ids) if image_ids else None)
    if not chosen:
        raise InvalidFile(coco.file, [f"{coco.file}: no usable annotation of "
                                      f"{', '.join(names)} in the chosen images"])
    images = {i.get("id"): i for i in coco.doc["images"]}
    cat_name = {c["id"]: c["name"] for c in coco.doc["categories"]}
    bank = read_bank(recipe)
    old_bank = json.loads(json.dumps(bank))
    if replace:
        bank["annotations"], bank["images"] = [], []
    bank_dir = (recipe.folder / recipe.prompts).parent
    taken = taken_prompt_ids(old_bank)  # ids stay unique across replacements too
    new_files: dict[str, bytes] = {}
    file_names = ImageNames(bank_dir, old_bank)  # equal bytes share one file, old ones too
    src_to_id: dict[object, int] = {}
    summary = EditSummary(recipe.folder, recipe.rev + 1, new_classes=[c.name for c in add])
    errors = []
    for a in chosen:
        info = images.get(a["image_id"])
        src = coco.images_dir / str((info or {}).get("file_name", ""))
        if info is None:
            errors.append(f"{coco.file}: annotation id {a.get('id')}: no image "
                          f"{a['image_id']!r}")
            continue
        if a["image_id"] not in src_to_id:
            iid = _bank_image(coco, a, info, src, bank, file_names, new_files, errors)
            if iid is None:
                continue
            src_to_id[a["image_id"]] = iid
        cls = rename.get(cat_name[a["category_id"]], cat_name[a["category_id"]])
        pid = next_prompt_id(cls, taken)
        taken.add(pid)
        bank["annotations"].append(_bank_annotation(coco, a, bank, cls, pid,
                                                    src_to_id[a["image_id"]]))
        summary.prompt_ids.append(pid)
    if errors:
        raise InvalidFile(coco.file, errors)

    normal_files = _pick_normals(coco, normals, seed, recipe.folder / recipe.normal)
    with RecipeEdit(recipe.folder) as ed:
        for name, data in new_files.items():
            ed.write_bytes(bank_dir / name, data)
        for name, data in normal_files.items():
            ed.write_bytes(recipe.folder / recipe.normal / name, data)
        if replace:
            _remove_dropped(ed, bank_dir, old_bank, bank)
        stage_recipe_yaml(ed, recipe, add)
        ed.write_json(recipe.folder / recipe.prompts, bank)
        ed.commit(lambda: load_recipe(recipe.folder))
    summary.images = list(new_files)
    if normal_files:
        summary.notes.append(f"{len(normal_files)} good part(s) added to "
                             f"{recipe.folder / recipe.normal}")
    return summary


def _check_request(coco: CocoSource, classes: list[str] | None, rename: dict[str, str],
                   per_class: int) -> list[str]:
    """The COCO category names to import; raise InvalidFile for unknown names or counts."""
    cats = [c["name"] for c in coco.doc["categories"]]
    used = {c["id"] for c in coco.doc["categories"]} & {a.get("category_id")
                                                         for a in coco.doc["annotations"]}
    names = classes or [c["name"] for c in coco.doc["categories"] if c["id"] in used]
    errors = [f"{coco.file}: categories: no category {n!r} (has: {', '.join(cats)})"
              for n in names if n not in cats]
    errors += [f"--rename {k}: no category {k!r} in {coco.file}" for k in rename if k not in cats]
    if per_class < 1:
        errors.append(f"--per-class must be >= 1 (got {per_class})")
    if errors:
        raise InvalidFile(coco.file, errors)
    return names


def _bank_image(coco: CocoSource, a: dict, info: dict, src: Path, bank: dict,
                file_names: ImageNames, new_files: dict[str, bytes],
                errors: list[str]) -> int | None:
    """List annotation `a`'s source image in the bank, once per distinct file; its bank id.

    An unreadable image or one whose size differs from the COCO file's appends to
    `errors` and returns None; new file bytes go to `new_files`.
    """
    data = src.read_bytes() if src.is_file() else b""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) \
        if data else None
    if img is None:
        errors.append(f"{src}: {'not a readable image' if data else 'file not found'}"
                      f" (image id {a['image_id']} of {coco.file})")
        return None
    if (info.get("width"), info.get("height")) not in ((None, None),
                                                       (img.shape[1], img.shape[0])):
        errors.append(f"{src}: is {img.shape[1]}x{img.shape[0]}, {coco.file} says "
                      f"{info.get('width')}x{info.get('height')}")
        return None
    name, is_new = file_names.name_for(src.name, data)
    if is_new:
        new_files[name] = data
        iid = next_id(bank["images"])
        bank["images"].append({"id": iid, "file_name": name,
                               "width": img.shape[1], "height": img.shape[0]})
    else:
        iid = next((int(i["id"]) for i in bank["images"] if i["file_name"] == name), -1)
        if iid < 0:  # a file of the old bank, dropped by --replace: list it again
            iid = next_id(bank["images"])
            bank["images"].append({"id": iid, "file_name": name,
                                   "width": img.shape[1], "height": img.shape[0]})
    return iid


def _bank_annotation(coco: CocoSource, a: dict, bank: dict, cls: str, pid: str,
                     image_id: int) -> dict:
    """The bank's copy of COCO annotation `a`: new ids, the recipe class, where it came from."""
    ann = {"id": next_id(bank["annotations"]), "image_id": image_id,
           "category_id": category_id(bank, cls), "bbox": [float(v) for v in a["bbox"]],
           "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": 0,
           "prompt_id": pid, "source": {"file": coco.file.name, "annotation_id": a.get("id")}}
    if a.get("segmentation"):
        ann["segmentation"] = a["segmentation"]
    return ann


def _remove_dropped(ed: RecipeEdit, bank_dir: Path, old_bank: dict, bank: dict) -> None:
    """Stage removal of the old bank's image files that --replace left unused."""
    kept = {i["file_name"] for i in bank["images"]}
    for i in old_bank["images"]:
        if i["file_name"] not in kept:
            ed.remove(bank_dir / i["file_name"])


def _pick_normals(coco: CocoSource, n: int, seed: int, dest: Path) -> dict[str, bytes]:
    """Up to `n` seeded defect-free images (no annotation) of the dataset, by file name."""
    if n <= 0:
        return {}
    annotated = {a.get("image_id") for a in coco.doc["annotations"]}
    free = [i for i in coco.doc["images"] if i.get("id") not in annotated
            and Path(str(i.get("file_name", ""))).suffix.lower() in IMAGE_SUFFIXES]
    if not free:
        raise InvalidFile(coco.file, [f"{coco.file}: no defect-free image for --normals"])
    rng = np.random.default_rng(seed + 1)
    out, errors = {}, []
    for k in rng.permutation(len(free))[:n]:
        src = coco.images_dir / str(free[int(k)]["file_name"])
        data = src.read_bytes() if src.is_file() else b""
        if not data or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) is None:
            errors.append(f"{src}: {'not a readable image' if data else 'file not found'}")
        elif (dest / src.name).exists() or src.name in out:
            continue
        else:
            out[src.name] = data
    if errors:
        raise InvalidFile(coco.file, errors)
    return out
