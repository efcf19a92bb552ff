"""Small real recipes for the recipe tests, rendered by inspector.acquisition.synthetic_parts.

Unlike conftest.write_recipe (noise images, for validation tests), these recipes enrol
the texture detector on synthetic parts of the size the synthetic camera delivers, so
a running service can inspect with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from inspector.acquisition.synthetic_parts import (
    frame_rng,
    good_part,
    render_part,
    save_coco,
    write_png,
)

NORMAL_SEED, PROMPT_SEED = 700, 701  # disjoint from the seeds the tests' cameras use


def make_recipe(
    folder: Path,
    recipe_id: str,
    size: int = 128,
    kinds: Sequence[str] = ("scratch", "pit", "crack", "stain", "missing_print"),
    prefix: str = "",
    plc_base: int = 11,
    n_normal: int = 6,
    n_prompt_images: int = 1,
    rev: int = 1,
) -> Path:
    """A recipe whose classes are `prefix + kind`, one prompt per kind per prompt image."""
    folder = Path(folder)
    (folder / "normal").mkdir(parents=True, exist_ok=True)
    for i in range(n_normal):
        write_png(folder / "normal" / f"good_{i:02d}.png",
                  good_part(frame_rng(NORMAL_SEED, i), size, size))
    samples = [render_part(frame_rng(PROMPT_SEED, i), size, size, defects=list(kinds))
               for i in range(n_prompt_images)]
    if kinds:
        save_coco(folder / "prompts", samples, json_name="prompts.json", images_dir=".",
                  names=[f"prompt_{i:02d}.png" for i in range(n_prompt_images)], prompt_ids=True)
    else:
        (folder / "prompts").mkdir(exist_ok=True)
        (folder / "prompts" / "prompts.json").write_text(
            '{"images": [], "annotations": [], "categories": []}')
    if prefix:  # rename the bank's categories and prompt ids to the prefixed classes
        import json

        bank = folder / "prompts" / "prompts.json"
        coco = json.loads(bank.read_text())
        for c in coco["categories"]:
            c["name"] = prefix + c["name"]
        for a in coco["annotations"]:
            a["prompt_id"] = prefix + a["prompt_id"]
        bank.write_text(json.dumps(coco, indent=1))
    doc = {
        "id": recipe_id, "rev": rev, "product": f"synthetic {recipe_id}", "mm_per_px": 0.05,
        "detector": {"kind": "texture", "params": {}},
        "classes": [{"name": prefix + k, "threshold": 0.5, "plc_code": plc_base + i}
                    for i, k in enumerate(kinds)],
        "unknown": {"enabled": True, "threshold": 0.5, "plc_code": 90},
    }
    (folder / "recipe.yaml").write_text("# test recipe\n" + yaml.safe_dump(doc, sort_keys=False))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (cache excluded) by relative path, to prove nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and "cache" not in p.relative_to(folder).parts}
