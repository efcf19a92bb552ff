"""Prompt bank errors name file, line and field; `recipe validate` opens every image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.core.validation import InvalidFile
from inspector.inference.detectors import build_detector
from inspector.recipes.cache import enroll_cached
from inspector.recipes.check import check_recipe
from inspector.recipes.recipe import load_recipe
from tests.helpers.recipe_factory import make_recipe


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    return make_recipe(tmp_path / "bank", "bank", kinds=("scratch", "pit", "crack"),
                       n_prompt_images=2)


def _bank(folder: Path) -> tuple[Path, dict]:
    path = folder / "prompts" / "prompts.json"
    return path, json.loads(path.read_text())


def _line(path: Path, needle: str, nth: int = 0) -> int:
    """1-based line of the nth line containing `needle`."""
    hits = [i for i, s in enumerate(path.read_text().splitlines(), 1) if needle in s]
    return hits[nth]


def _errors(folder: Path) -> list[str]:
    with pytest.raises(InvalidFile) as exc:
        load_recipe(folder)
    return exc.value.errors


def test_bank_errors_carry_file_line_and_field(recipe_dir: Path) -> None:
    path, coco = _bank(recipe_dir)
    coco["annotations"][1]["bbox"] = [1, 2, 0, 5]
    coco["annotations"][4]["prompt_id"] = coco["annotations"][0]["prompt_id"]
    coco["annotations"][2]["category_id"] = 4  # 'stain' exists in the bank, not in the recipe
    coco["annotations"][3]["image_id"] = 77
    path.write_text(json.dumps(coco, indent=1))
    errors = _errors(recipe_dir)
    dup = coco["annotations"][0]["prompt_id"]
    lines = [_line(path, '"bbox"', 1), _line(path, '"category_id": 4'),
             _line(path, '"image_id": 77'), _line(path, f'"prompt_id": "{dup}"', 1)]
    assert errors == [
        f"{path}:{lines[0]}: annotations[1].bbox: must be [x, y, w, h] with w, h > 0 "
        "(got [1, 2, 0, 5])",
        f"{path}:{lines[1]}: annotations[2].category_id: class 'stain' is not in the "
        "recipe's classes",
        f"{path}:{lines[2]}: annotations[3].image_id: no image with id 77",
        f"{path}:{lines[3]}: annotations[4].prompt_id: duplicate prompt_id '{dup}'",
    ]


def test_json_syntax_error_names_the_line(recipe_dir: Path) -> None:
    path, coco = _bank(recipe_dir)
    text = json.dumps(coco, indent=1).splitlines()
    text[7] += ","  # a trailing comma
    path.write_text("\n".join(text))
    (err,) = _errors(recipe_dir)
    assert err.startswith(f"{path}:") and "cannot read prompt bank" in err
    assert int(err.split(":")[1]) in (8, 9)


def test_bank_that_is_not_coco(recipe_dir: Path) -> None:
    path, _ = _bank(recipe_dir)
    path.write_text('[1, 2]')
    assert _errors(recipe_dir) == [f"{path}:1: (top level): expected an object with lists "
                                   "images, annotations, categories"]
    path.write_text('{"images": [], "annotations": [3], "categories": []}')
    assert _errors(recipe_dir) == [f"{path}:1: annotations[0]: expected an object (got 3)"]


def test_missing_image_file(recipe_dir: Path) -> None:
    (recipe_dir / "prompts" / "prompt_01.png").unlink()
    errors = _errors(recipe_dir)
    assert len(errors) == 3 and all("image file not found" in e and "prompt_01.png" in e
                                    for e in errors)


def test_validate_opens_every_image(recipe_dir: Path) -> None:
    assert check_recipe(recipe_dir).errors == []
    (recipe_dir / "prompts" / "prompt_01.png").write_bytes(b"\x89PNG\r\n broken")
    (recipe_dir / "normal" / "good_03.png").write_text("not an image")
    path, coco = _bank(recipe_dir)
    coco["images"][0]["width"] = 99
    coco["annotations"][0]["bbox"] = [120, 5, 20, 5]
    coco["annotations"][1]["segmentation"]["size"] = [64, 64]
    path.write_text(json.dumps(coco, indent=1))
    report = check_recipe(recipe_dir)
    text = "\n".join(report.errors)
    assert f"{recipe_dir / 'normal' / 'good_03.png'}: normal: not a readable image" in text
    line = _line(path, '"file_name": "prompt_01.png"')
    assert f"{path}:{line}: images[1].file_name: not a readable image" in text
    assert "images[0]: width/height say 99x128, the file is 128x128" in text
    assert "annotations[0].bbox: [120, 5, 20, 5] reaches outside the 128x128 image" in text
    assert "annotations[1].segmentation: size [64, 64] is not the image's [128, 128]" in text
    assert len(report.errors) == 5, report.errors


def test_validate_warns_about_classes_without_examples(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path / "w", "w", kinds=("scratch", "pit"))
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(text.replace(
        "unknown:", "- name: dent\n  plc_code: 40\nunknown:"))
    report = check_recipe(folder)
    assert report.errors == []
    assert report.warnings == ["class 'dent' has no prompt example: its defects can only be "
                               "reported as unknown"]


def test_good_parts_must_agree_and_suffice(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path / "n", "n", n_normal=3, kinds=("pit",))
    make_recipe(tmp_path / "other", "other", size=96, n_normal=1, kinds=())
    (tmp_path / "other" / "normal" / "good_00.png").rename(folder / "normal" / "odd.png")
    text = "\n".join(check_recipe(folder).errors)
    assert "good parts differ in size: 128x128 (3), 96x96 (1)" in text
    (folder / "normal" / "odd.png").unlink()
    assert "the texture detector needs >= 4 good parts, found 3" in "\n".join(
        check_recipe(folder).errors)


def test_unreadable_image_stops_enrolment_with_its_name(recipe_dir: Path) -> None:
    (recipe_dir / "normal" / "good_02.png").write_bytes(b"garbage")
    recipe = load_recipe(recipe_dir)  # cheap checks pass: the file exists
    with pytest.raises(InvalidFile, match="good_02.png: not a readable image"):
        enroll_cached(recipe, build_detector(recipe.detector))


def test_field_types_and_duplicate_ids_are_refused_on_load(recipe_dir: Path) -> None:
    path, coco = _bank(recipe_dir)
    coco["images"].append({"id": 1, "file_name": "prompt_00.png"})  # image id 1 twice
    coco["categories"][1]["name"] = 7
    del coco["annotations"][2]["image_id"]
    path.write_text(json.dumps(coco, indent=1))
    errors = _errors(recipe_dir)
    n = len(coco["images"]) - 1
    name_line = _line(path, '"name": 7')
    assert errors == [  # in file order: images, annotations, categories
        f"{path}:{_item_line(path, 'images', n) + 1}: images[{n}].id: duplicate image id 1",
        f"{path}:{_item_line(path, 'annotations', 2)}: annotations[2].image_id: Field required",
        f"{path}:{name_line}: categories[1].name: Input should be a valid string (got 7)",
    ]


def _item_line(path: Path, key: str, n: int) -> int:
    """1-based line where item n of the top-level list `key` opens (JSON with indent=1)."""
    lines = path.read_text().splitlines()
    start = lines.index(f' "{key}": [')
    end = lines.index(" ]", start)
    return [i for i in range(start, end) if lines[i] == "  {"][n] + 1


def test_the_bank_is_read_once_into_typed_fields(recipe_dir: Path) -> None:
    recipe = load_recipe(recipe_dir)
    bank = recipe.prompt_bank()
    _, coco = _bank(recipe_dir)
    assert [a.pid for a in bank.annotations] == [a["prompt_id"] for a in coco["annotations"]]
    assert all(isinstance(a.bbox, tuple) and len(a.bbox) == 4 for a in bank.annotations)
    assert [bank.class_of(a) for a in bank.annotations] == [
        {c["id"]: c["name"] for c in coco["categories"]}[a["category_id"]]
        for a in coco["annotations"]]
    assert bank.path(bank.images[0]) == recipe_dir / "prompts" / coco["images"][0]["file_name"]
