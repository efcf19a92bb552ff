"""Growing a recipe: new, add-prompt, import-coco. Every bad input changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.acquisition.synthetic_parts import (
    DEFECT_KINDS,
    frame_rng,
    render_part,
    save_coco,
    write_png,
)
from inspector.core.validation import InvalidFile
from inspector.recipes.edit import NewClass, add_prompt, new_recipe
from inspector.recipes.importing import import_coco
from inspector.recipes.recipe import load_prompts, load_recipe
from tests.helpers.files import REPO
from tests.helpers.recipe_factory import make_recipe, snapshot

DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    """Classes scratch, pit, crack; one prompt each; the demo's comment style."""
    folder = make_recipe(tmp_path / "r", "edit-me", kinds=("scratch", "pit", "crack"))
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(text.replace("classes:", "classes:  # rules kept"))
    return folder


def _ng_image(tmp_path: Path, kind: str, seed: int = 5, size: int = 128):
    img, truths = render_part(frame_rng(900, seed), size, size, defects=[kind])
    path = tmp_path / f"ng_{kind}_{seed}.png"
    write_png(path, img)
    mask = tmp_path / f"ng_{kind}_{seed}_mask.png"
    cv2.imwrite(str(mask), truths[0].mask.astype(np.uint8) * 255)
    return path, truths[0].bbox, mask


def test_add_prompt_of_known_class(recipe_dir: Path, tmp_path: Path) -> None:
    image, box, mask = _ng_image(tmp_path, "pit")
    before = load_recipe(recipe_dir)
    s = add_prompt(recipe_dir, image, box, "pit", mask=mask)
    after = load_recipe(recipe_dir)
    assert (s.rev, after.rev) == (before.rev + 1, before.rev + 1)
    assert s.prompt_ids == ["pit-2"] and s.images == [image.name]
    assert after.sha256 != before.sha256
    ex = next(p for p in load_prompts(after) if p.prompt_id == "pit-2")
    assert ex.cls == "pit" and ex.bbox == tuple(float(v) for v in box)
    assert ex.mask is not None and ex.mask.sum() == cv2.imread(str(mask), 0).astype(bool).sum()
    assert "classes:  # rules kept" in (recipe_dir / "recipe.yaml").read_text()  # comments stay
    # the same image again: no second copy, a new id
    s2 = add_prompt(recipe_dir, image, box, "pit")
    assert s2.prompt_ids == ["pit-3"] and s2.images == []
    bank = json.loads((recipe_dir / "prompts" / "prompts.json").read_text())
    assert len(bank["images"]) == 2


def test_add_prompt_of_new_class_needs_plc_code(recipe_dir: Path, tmp_path: Path) -> None:
    image, box, _ = _ng_image(tmp_path, "stain")
    before = snapshot(recipe_dir)
    with pytest.raises(InvalidFile, match=r"class 'stain' is not in .*give it a PLC code"):
        add_prompt(recipe_dir, image, box, "stain")
    assert snapshot(recipe_dir) == before
    s = add_prompt(recipe_dir, image, box, "stain",
                   new_class=NewClass("stain", 14, severity="minor", min_area_mm2=0.5))
    assert s.new_classes == ["stain"] and s.prompt_ids == ["stain-1"]
    r = load_recipe(recipe_dir)
    rule = r.class_rule("stain")
    assert (rule.plc_code, rule.severity, rule.min_area_mm2) == (14, "minor", 0.5)
    data = yaml.safe_load((recipe_dir / "recipe.yaml").read_text())
    assert [c["name"] for c in data["classes"]] == ["scratch", "pit", "crack", "stain"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"box": (120, 10, 20, 20)}, "reaches outside the 128x128 image"),
        ({"box": (10, 10, 0, 5)}, "width and height must be > 0"),
        ({"cls": "bad name"}, "not a valid class name"),
        ({"cls": "unknown", "new_class": NewClass("unknown", 5)}, "'unknown' is reserved"),
        ({"prompt_id": "pit-1"}, "prompt_id 'pit-1' is taken"),
        ({"new_class": NewClass("pit", 77)}, "class 'pit' exists already"),
        ({"image": "missing.png"}, "missing.png: file not found"),
        ({"image": "garbage.png"}, "garbage.png: not a readable image"),
        ({"image": "small.png", "mask": None, "box": (1, 1, 5, 5)},
         "size 64x64 differs from the recipe's good parts 128x128"),
        ({"mask": "small.png"}, "--mask: size 64x64 differs from the image's 128x128"),
        ({"mask": "empty.png"}, "--mask: no defect pixels"),
        ({"mask": "elsewhere.png"}, "the mask has no pixel inside the box"),
    ],
)
def test_bad_add_prompt_changes_nothing(recipe_dir: Path, tmp_path: Path, change: dict,
                                        needle: str) -> None:
    image, box, mask = _ng_image(tmp_path, "pit")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((64, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((128, 128), np.uint8))
    far = np.zeros((128, 128), np.uint8)
    far[0:3, 0:3] = 255
    cv2.imwrite(str(tmp_path / "elsewhere.png"), far)
    args = {"image": image, "box": box, "cls": "pit", "mask": mask, **change}
    for key in ("image", "mask"):
        if isinstance(args[key], str):
            args[key] = tmp_path / args[key]
    before = snapshot(recipe_dir)
    with pytest.raises(InvalidFile, match=needle):
        add_prompt(recipe_dir, **args)
    assert snapshot(recipe_dir) == before


def test_a_failing_commit_is_rolled_back(recipe_dir: Path, tmp_path: Path) -> None:
    """If the edited recipe does not load, every file gets its old bytes back."""
    image, box, _ = _ng_image(tmp_path, "pit")
    before = snapshot(recipe_dir)
    (recipe_dir / "prompts" / "prompt_00.png").unlink()  # breaks the bank for the final check
    del before["prompts/prompt_00.png"]
    with pytest.raises(InvalidFile, match="image file not found"):
        add_prompt(recipe_dir, image, box, "pit")
    assert snapshot(recipe_dir) == before


def test_frame_image_is_cut_to_the_roi(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path / "roi", "roi", kinds=("pit",))
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(text + "roi: [16, 8, 128, 128]\n")
    img, truths = render_part(frame_rng(900, 1), 128, 128, defects=["pit"])
    frame = np.zeros((150, 160), np.uint8)
    frame[8:136, 16:144] = img
    write_png(tmp_path / "frame.png", frame)
    x, y, w, h = truths[0].bbox
    with pytest.raises(InvalidFile, match="use --frame"):
        add_prompt(folder, tmp_path / "frame.png", (x + 16, y + 8, w, h), "pit")
    s = add_prompt(folder, tmp_path / "frame.png", (x + 16, y + 8, w, h), "pit", frame=True)
    ex = next(p for p in load_prompts(load_recipe(folder)) if p.prompt_id == s.prompt_ids[0])
    assert ex.bbox == (x, y, w, h) and np.array_equal(ex.image, img)


def test_new_recipe(tmp_path: Path) -> None:
    good = []
    for i in range(2):
        good.append(tmp_path / f"g{i}.png")
        write_png(good[-1], np.full((32, 32), 100 + i, np.uint8))
    r = new_recipe(tmp_path / "fresh", "fresh", "Fresh part", [NewClass("dent", 21)],
                   mm_per_px=0.1, normals=good)
    assert (r.id, r.rev, [c.name for c in r.classes]) == ("fresh", 1, ["dent"])
    assert sorted(p.name for p in (r.folder / "normal").iterdir()) == ["g0.png", "g1.png"]
    with pytest.raises(InvalidFile, match="already exists"):
        new_recipe(tmp_path / "fresh", "fresh", "again", [])
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(InvalidFile, match="bad.png: not a readable image"):
        new_recipe(tmp_path / "other", "other", "x", [], normals=[tmp_path / "bad.png"])
    assert not (tmp_path / "other").exists()
    with pytest.raises(InvalidFile, match="id"):  # invalid id: nothing left behind
        new_recipe(tmp_path / "third", "no spaces allowed", "x", [])
    assert not (tmp_path / "third").exists()


# --- import-coco ------------------------------------------------------------------------
@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """A COCO dataset of 10 parts with 2 defects each (every kind 4 times), 3 defect-free."""
    samples = [render_part(frame_rng(910, i), 128, 128,
                           defects=[DEFECT_KINDS[i % 5], DEFECT_KINDS[(i + 2) % 5]])
               for i in range(10)]
    samples += [render_part(frame_rng(911, i), 128, 128, defect_rate=0.0) for i in range(3)]
    return save_coco(tmp_path / "ds", samples)


def test_import_coco_draws_seeded_distinct_images(recipe_dir: Path, coco: Path) -> None:
    s = import_coco(recipe_dir, coco, classes=["scratch", "pit"], per_class=2, seed=3)
    bank = json.loads((recipe_dir / "prompts" / "prompts.json").read_text())
    new = [a for a in bank["annotations"] if a["prompt_id"] in s.prompt_ids]
    by_cls: dict[str, list] = {}
    cats = {c["id"]: c["name"] for c in bank["categories"]}
    for a in new:
        by_cls.setdefault(cats[a["category_id"]], []).append(a)
    for cls, anns in by_cls.items():
        assert 1 <= len(anns) <= 2
        assert len({a["image_id"] for a in anns}) == len(anns)  # distinct images
        assert [a["prompt_id"] for a in anns] == [f"{cls}-{n}" for n in range(2, 2 + len(anns))]
    assert load_recipe(recipe_dir).rev == 2
    # the same seed on a copy of the recipe draws the same source annotations
    twin = recipe_dir.parent / "twin"
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(recipe_dir, twin)
    shutil.rmtree(recipe_dir)
    make_recipe(recipe_dir, "edit-me", kinds=("scratch", "pit", "crack"))
    import_coco(recipe_dir, coco, classes=["scratch", "pit"], per_class=2, seed=3)
    src = [[a["source"] for a in json.loads((f / "prompts" / "prompts.json").read_text())
            ["annotations"] if "source" in a] for f in (recipe_dir, twin)]
    assert src[0] == src[1] and len(src[0]) == len(s.prompt_ids)


def test_import_coco_new_classes_normals_and_replace(recipe_dir: Path, coco: Path) -> None:
    before = snapshot(recipe_dir)
    with pytest.raises(InvalidFile, match="class 'stain' is not in"):
        import_coco(recipe_dir, coco, classes=["stain"])
    with pytest.raises(InvalidFile, match="no category 'dent'"):
        import_coco(recipe_dir, coco, classes=["dent"])
    assert snapshot(recipe_dir) == before
    s = import_coco(recipe_dir, coco, classes=["stain"], per_class=1,
                    new_classes={"stain": NewClass("stain", 14)}, normals=2)
    assert s.new_classes == ["stain"] and s.prompt_ids == ["stain-1"]
    assert len(list((recipe_dir / "normal").glob("part_*.png"))) == 2
    r = import_coco(recipe_dir, coco, classes=["pit"], per_class=1, replace=True)
    bank = json.loads((recipe_dir / "prompts" / "prompts.json").read_text())
    assert [a["prompt_id"] for a in bank["annotations"]] == r.prompt_ids == ["pit-2"]
    files = {p.name for p in (recipe_dir / "prompts").iterdir()} - {"prompts.json"}
    assert files == {i["file_name"] for i in bank["images"]}  # replaced images removed
    assert load_recipe(recipe_dir).rev == 3


def test_import_coco_missing_image_changes_nothing(recipe_dir: Path, coco: Path) -> None:
    for p in (coco.parent / "images").glob("part_*.png"):
        p.write_bytes(b"")  # unreadable
    before = snapshot(recipe_dir)
    with pytest.raises(InvalidFile, match="file not found|not a readable image"):
        import_coco(recipe_dir, coco, classes=["pit"])
    bad = coco.parent / "bad.json"
    bad.write_text('{"images": [], "annotations": [\n  {"id": 1,}\n]}')
    with pytest.raises(InvalidFile, match=r"bad.json:2: not valid JSON"):
        import_coco(recipe_dir, bad)
    assert snapshot(recipe_dir) == before


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data (real datasets)")
def test_import_from_neu_det(tmp_path: Path) -> None:
    ann = DATA / "neu-det" / "annotations_train.json"
    if not ann.is_file():
        pytest.skip(f"{ann} not present")
    names = [c["name"] for c in json.loads(ann.read_text())["categories"]]
    folder = new_recipe(tmp_path / "neu", "neu", "NEU steel",
                        [NewClass(n.replace("-", "_"), 30 + i) for i, n in enumerate(names)]
                        ).folder
    s = import_coco(folder, ann, per_class=4, seed=1,
                    rename={n: n.replace("-", "_") for n in names})
    r = load_recipe(folder)
    prompts = load_prompts(r)
    assert len(prompts) == len(s.prompt_ids) == 4 * len(names)
    for c in r.classes:
        assert len([p for p in prompts if p.cls == c.name]) == 4
