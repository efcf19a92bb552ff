"""`inspector eval-unknown` on a small synthetic COCO dataset (the real one is
../shared/data, not here): the protocol's metrics, and `--compare` side by side."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from inspector.acquisition.synthetic_parts import frame_rng, good_part
from inspector.cli.main import main


def _dataset(root: Path) -> Path:
    """8 good train parts; a test split of 6 good and 6 with a dark disc (polygon)."""
    (root / "images").mkdir(parents=True)
    for split, n_good, n_bad, seed in (("train", 8, 0, 40), ("test", 6, 6, 41)):
        images, anns = [], []
        for i in range(n_good + n_bad):
            img = good_part(frame_rng(seed, i), 96, 96)
            if i >= n_good:
                cv2.circle(img, (30 + 4 * (i - n_good), 50), 9, 10, -1)
                x, y = 30 + 4 * (i - n_good), 50
                poly = [float(v) for dx, dy in ((-9, -9), (9, -9), (9, 9), (-9, 9))
                        for v in (x + dx, y + dy)]
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                             "bbox": [x - 9, y - 9, 18, 18], "segmentation": [poly]})
            name = f"{split}_{i}.png"
            cv2.imwrite(str(root / "images" / name), img)
            images.append({"id": i + 1, "file_name": name, "width": 96, "height": 96})
        (root / f"annotations_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns,
             "categories": [{"id": 1, "name": "hole"}]}))
    return root


def test_eval_unknown_compare_runs_the_steps_side_by_side(tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["eval-unknown", "--data", str(data), "--out", str(out), "--refs", "4,all",
                 "--compare", "--params", '{"proj_dim": 16}']) == 0
    table = capsys.readouterr().out
    result = json.loads((out / "steps.json").read_text())
    assert [s["step"] for s in result["steps"]] == ["before", "now-native-only", "now"]
    assert result["steps"][0]["params"]["search"] == "faiss-ivf"
    # today's params (--params applied) without and with the coarse scale
    assert result["steps"][1]["params"]["proj_dim"] == result["steps"][2]["params"]["proj_dim"] \
        == 16
    assert result["steps"][1]["params"]["coarse"] is None
    assert result["steps"][2]["params"]["coarse"] is not None
    for step in result["steps"]:
        assert [r["refs_label"] for r in step["rows"]] == ["4", "all"]
        for r in step["rows"]:  # a dark disc on a textured part is easy to find
            assert r["image_auroc_max"] > 0.9 and r["pixel_auroc"] > 0.9, r
            # enrolled as a recipe: a calibrated threshold that passes good parts and
            # flags defective ones, and a border scale per border class
            assert r["threshold"] > 0 and r["defective_flagged"] > r["good_flagged"], r
            # one border scale per scale: before the native one, now a coarse one too
            assert len(r["border_scale"]) == len(r["units"]) == \
                (1 if step["params"]["coarse"] is None else 2)
            for b in r["border_scale"]:
                assert len(b) == 2 * step["params"]["border_rings"] + 1
    assert table.count("| before |") == table.count("| now-native-only |") == \
        table.count("| now |") == 2
    assert (out / "now" / "overlays_all.png").is_file()
