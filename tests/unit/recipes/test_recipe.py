"""Recipe validation: structure, classes, prompt bank files, content hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from inspector.core.validation import InvalidFile
from inspector.recipes.recipe import load_prompts, load_recipe
from tests.helpers.files import RECIPE, write_recipe


def test_good_recipe(recipe_dir: Path) -> None:
    r = load_recipe(recipe_dir)
    assert (r.id, r.rev) == ("test-part", 3)
    assert [c.name for c in r.classes] == ["scratch", "pit", "crack"]
    assert len(r.sha256) == 64 and r.ref == {"id": "test-part", "rev": 3, "sha256": r.sha256}
    prompts = load_prompts(r)
    assert [p.prompt_id for p in prompts] == ["scratch-1", "pit-1", "crack-1"]
    assert prompts[0].image.shape == (64, 64)


def test_hash_follows_content(recipe_dir: Path) -> None:
    before = load_recipe(recipe_dir).sha256
    (recipe_dir / "normal" / "good0.png").write_bytes(b"changed")
    assert load_recipe(recipe_dir).sha256 != before


def test_detector_kind_defaults_to_select_when_the_bank_has_examples(tmp_path: Path) -> None:
    """With prompts, the detector is chosen at enrolment (`select`) by default."""
    recipe = json.loads(json.dumps(RECIPE))
    recipe.pop("detector", None)
    folder = write_recipe(tmp_path / "with", recipe)
    assert load_recipe(folder).detector.kind == "select"
    bank = folder / "prompts" / "prompts.json"
    coco = json.loads(bank.read_text())
    bank.write_text(json.dumps({**coco, "annotations": []}))
    assert load_recipe(folder).detector.kind == "texture"  # nothing to prompt with
    explicit = write_recipe(tmp_path / "explicit", {**recipe, "detector": {"kind": "texture"}})
    assert load_recipe(explicit).detector.kind == "texture"


def _errors(folder: Path) -> list[str]:
    with pytest.raises(InvalidFile) as exc:
        load_recipe(folder)
    return exc.value.errors


def _with(tmp_path: Path, **changes) -> Path:
    recipe = json.loads(json.dumps(RECIPE))
    recipe.update(changes)
    return write_recipe(tmp_path / "r", recipe)


def test_unknown_key_in_class(tmp_path: Path) -> None:
    classes = json.loads(json.dumps(RECIPE["classes"]))
    classes[1]["treshold"] = 0.3
    folder = _with(tmp_path, classes=classes)
    (err,) = _errors(folder)
    text = (folder / "recipe.yaml").read_text().splitlines()
    line = next(i for i, s in enumerate(text, 1) if "treshold" in s)
    assert err == (f"{folder / 'recipe.yaml'}:{line}: classes[1].treshold: unknown key "
                   "(not allowed here; check the spelling)")


def _line(folder: Path, text: str) -> int:
    lines = (folder / "recipe.yaml").read_text().splitlines()
    return next(i for i, s in enumerate(lines, 1) if text in s)


@pytest.mark.parametrize("kind", [None, "prompt", "texture", "match", "select"])
def test_misspelt_detector_params_are_rejected_at_load(tmp_path: Path, kind) -> None:
    """Each kind's params are checked against its own model (the registry), the kind left
    out resolved first: a typo is a file:line: field error, not a crash when building."""
    detector = {"params": {"min_scor": 0.9}} | ({"kind": kind} if kind else {})
    folder = _with(tmp_path, detector=detector)
    (err,) = _errors(folder)
    assert err == (f"{folder / 'recipe.yaml'}:{_line(folder, 'min_scor')}: "
                   "detector.params.min_scor: unknown key (not allowed here; check the "
                   "spelling)")


def test_detector_and_unknown_params_values_are_checked(tmp_path: Path) -> None:
    unknown = dict(RECIPE["unknown"], params={"coreset_ratio": 2})
    folder = _with(tmp_path, detector={"kind": "prompt", "params": {"size": 17}},
                   unknown=unknown)
    errors = _errors(folder)
    assert [e.split(": ")[1] for e in errors] == ["detector.params.size",
                                                  "unknown.params.coreset_ratio"]
    assert errors[0].startswith(f"{folder / 'recipe.yaml'}:{_line(folder, 'size: 17')}:")
    assert "multiple of 16" in errors[0] and "(got 17)" in errors[0]
    assert errors[1].startswith(f"{folder / 'recipe.yaml'}:{_line(folder, 'coreset_ratio')}:")
    # the same parameters, valid: the recipe loads with them
    unknown["params"] = {"coreset_ratio": 0.5}
    ok = _with(tmp_path / "ok", detector={"kind": "prompt", "params": {"size": 256}},
               unknown=unknown)
    assert load_recipe(ok).detector.params == {"size": 256}


def test_wrong_types_and_ranges(tmp_path: Path) -> None:
    classes = json.loads(json.dumps(RECIPE["classes"]))
    classes[0]["threshold"] = 1.5
    classes[2]["plc_code"] = "eleven"
    errors = _errors(_with(tmp_path, classes=classes, rev=0))
    fields = [e.split(": ")[1] for e in errors]
    assert fields == ["rev", "classes[0].threshold", "classes[2].plc_code"]
    assert "(got 'eleven')" in errors[2]


def test_duplicate_and_reserved_class_names(tmp_path: Path) -> None:
    classes = json.loads(json.dumps(RECIPE["classes"]))
    classes[1]["name"] = "scratch"
    (err,) = _errors(_with(tmp_path, classes=classes))
    assert "classes: Value error, class names must be unique; repeated: scratch" in err


def test_missing_plc_code_and_id(tmp_path: Path) -> None:
    folder = write_recipe(tmp_path / "r")
    data = yaml.safe_load((folder / "recipe.yaml").read_text())
    del data["id"]
    del data["classes"][0]["plc_code"]
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    errors = _errors(folder)
    assert [e.split(": ")[1:3] for e in errors] == [
        ["id", "Field required"], ["classes[0].plc_code", "Field required"]]


def test_prompt_bank_problems_are_named(tmp_path: Path) -> None:
    folder = write_recipe(tmp_path / "r")
    bank = folder / "prompts" / "prompts.json"
    coco = json.loads(bank.read_text())
    coco["categories"].append({"id": 9, "name": "dent"})
    coco["annotations"][0]["category_id"] = 9
    coco["annotations"][1]["bbox"] = [1, 2, 0, 5]
    coco["annotations"][2]["prompt_id"] = coco["annotations"][1]["prompt_id"]
    coco["images"][2]["file_name"] = "missing.png"
    bank.write_text(json.dumps(coco))
    errors = _errors(folder)
    assert any("annotations[0].category_id: class 'dent' is not in the recipe's classes" in e
               for e in errors)
    assert any("annotations[1].bbox: must be [x, y, w, h] with w, h > 0" in e for e in errors)
    assert any("annotations[2].prompt_id: duplicate prompt_id 'pit-1'" in e for e in errors)
    assert any("annotations[2]: image file not found" in e and "missing.png" in e
               for e in errors)
    assert all(e.startswith(str(bank)) for e in errors)


def test_missing_prompt_file_and_normal_folder(tmp_path: Path) -> None:
    folder = _with(tmp_path, prompts="prompts/nothere.json", normal="goods")
    (err,) = _errors(folder)
    assert "prompts: file not found" in err and "nothere.json" in err
