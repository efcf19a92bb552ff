"""Evaluation: AP50 against a hand-checked tiny COCO case, prompt drawing, reports."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.coco import coco_ap50
from inspector.evaluation.protocol import draw_prompts
from inspector.evaluation.report import markdown, pr_plot

CATS = [{"id": 1, "name": "crack"}, {"id": 2, "name": "pit"}, {"id": 3, "name": "stain"}]


def tiny_gt() -> dict:
    """Three images: 1 and 2 hold one crack each, 3 is defect-free; one pit on image 1."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 10]},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [60, 60, 10, 10]},
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def test_box_ap50_matches_the_hand_computed_value():
    """crack: hit (0.9), false positive on the defect-free image (0.8), hit (0.7).

    PR points: (R 0.5, P 1), (0.5, 0.5), (1.0, 0.667). COCO interpolates precision to the
    max at higher recall and averages 101 recall points: 51 points at recall <= 0.5 with
    precision 1, 50 points above with 2/3: AP = (51 + 50 * 2/3) / 101 = 0.83498.
    pit: its only detection has IoU 0.36 (< 0.5) with the truth -> AP 0.
    stain: no test instance -> None, left out of the mean.
    """
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 10, 20, 20], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [50, 51, 30, 10], "score": 0.7},
        {"image_id": 1, "category_id": 2, "bbox": [63, 63, 10, 10], "score": 0.6},
    ]
    r = coco_ap50(tiny_gt(), dets, "bbox")
    assert r["per_class"]["crack"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    assert r["per_class"]["pit"] == 0.0
    assert r["per_class"]["stain"] is None
    assert r["ap50"] == pytest.approx(((51 + 50 * 2 / 3) / 101) / 2, abs=1e-6)
    rec, prec = r["pr"]["crack"]
    assert len(rec) == 101
    assert prec[0] == pytest.approx(1.0) and prec[-1] == pytest.approx(2 / 3)


def test_perfect_and_empty_detections():
    gt = tiny_gt()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 0.5} for a in gt["annotations"]]
    assert coco_ap50(gt, perfect)["ap50"] == pytest.approx(1.0)
    assert coco_ap50(gt, [])["ap50"] == 0.0


def test_mask_ap50_uses_the_masks():
    from pycocotools import mask as mask_utils

    gt = tiny_gt()
    full = np.zeros((100, 100), np.uint8, order="F")
    full[10:30, 10:30] = 1
    rle = mask_utils.encode(full)
    rle["counts"] = rle["counts"].decode()
    for a in gt["annotations"]:
        m = np.zeros((100, 100), np.uint8, order="F")
        x, y, w, h = a["bbox"]
        m[y:y + h, x:x + w] = 1
        r = mask_utils.encode(m)
        r["counts"] = r["counts"].decode()
        a["segmentation"] = r
    # the right box but a mask covering a quarter of the truth: box hit, mask miss
    quarter = np.zeros((100, 100), np.uint8, order="F")
    quarter[10:20, 10:20] = 1
    q = mask_utils.encode(quarter)
    q["counts"] = q["counts"].decode()
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9,
             "segmentation": q}]
    assert coco_ap50(gt, dets, "bbox")["per_class"]["crack"] == pytest.approx(0.5, abs=0.01)
    assert coco_ap50(gt, dets, "segm")["per_class"]["crack"] == 0.0
    dets[0]["segmentation"] = rle
    assert coco_ap50(gt, dets, "segm")["per_class"]["crack"] == pytest.approx(0.5, abs=0.01)


def test_prompts_come_from_distinct_train_images_and_are_seeded():
    anns, images = [], []
    for i in range(1, 11):
        images.append({"id": i})
        for _ in range(2):  # two cracks per image
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1,
                         "bbox": [0, 0, 1, 1]})
    anns.append({"id": 99, "image_id": 3, "category_id": 2, "bbox": [0, 0, 1, 1]})
    train = {"images": images, "annotations": anns, "categories": CATS}
    p0 = draw_prompts(train, 4, seed=0)
    assert len(p0[1]) == 4 and len({a["image_id"] for a in p0[1]}) == 4
    assert [a["id"] for a in p0[2]] == [99]  # only one pit exists: k <= available images
    assert 3 not in p0  # no stain in train: no prompt
    assert draw_prompts(train, 4, seed=0) == p0
    seeds = {tuple(a["id"] for a in draw_prompts(train, 4, seed=s)[1]) for s in range(5)}
    assert len(seeds) > 1
    with pytest.raises(ValueError, match="shots"):
        draw_prompts(train, 5, seed=0)


def test_report_markdown_and_pr_png(tmp_path: Path):
    r = coco_ap50(tiny_gt(), [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20],
                                "score": 0.9}])
    png = pr_plot(r["pr"], tmp_path / "pr.png", "tiny")
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (480, 640, 3)
    assert (img != 255).any(axis=2).sum() > 1000  # something was drawn
    result = {"dataset": "tiny", "model": "m", "shots": 4, "seeds": [0], "classes": ["crack"],
              "per_class_box_ap50": {"crack": 0.5}, "per_class_mask_ap50": {"crack": None},
              "box_ap50_mean": 0.5, "mask_ap50_mean": None,
              "per_seed": [{"seed": 0, "box_ap50": 0.5, "mask_ap50": None}],
              "test_images": 3, "defect_free_test_images": 1, "backend": "onnxruntime",
              "size": 320, "threads": 1, "latency_ms": {"p50": 1.0, "p99": 2.0, "encode_p50": 0.5}}
    md = markdown(result)
    assert "| crack | 50.0 |" in md and "mask" not in md.split("\n")[2]
    assert "time cap" not in md
    json.dumps(result)
    result["per_seed"] = [{"seed": 0, "box_ap50": 0.5, "mask_ap50": None,
                           "adapt": {"steps_done": 1241, "capped_by_time": True}},
                          {"seed": 1, "box_ap50": 0.5, "mask_ap50": None,
                           "adapt": {"steps_done": 1500, "capped_by_time": False}}]
    md = markdown(result)  # a busy machine's enrolment is named as such
    assert "time cap in 1 of 2 seed(s)** (seed 0: 1241 steps)" in md


def _tiny_dataset(data: Path, size: int, n_test: int) -> list:
    """A COCO-layout dataset of 4 defective train parts and `n_test` test parts (70 %
    defective); returns the test samples."""
    from inspector.acquisition.synthetic_parts import iter_parts, save_coco

    train = list(iter_parts(4, 21, size, size, defect_rate=1.0))
    test = list(iter_parts(n_test, 22, size, size, defect_rate=0.7))
    save_coco(data, train, "annotations_train.json", names=[f"tr{i}.png" for i in range(4)])
    save_coco(data, test, "annotations_test.json",
              names=[f"te{i}.png" for i in range(n_test)])
    return test


def test_run_eval_end_to_end_on_a_tiny_synthetic_dataset(tmp_path: Path, tmp_path_factory):
    """The whole protocol on a 4 + 3 image synthetic COCO dataset, with a test model."""
    from inspector.evaluation.run import EvalSettings, run_eval
    from tests.helpers.prompt_fixtures import runtime_model

    folder, size = runtime_model(tmp_path_factory)
    data = tmp_path / "tiny"
    _tiny_dataset(data, size, n_test=3)
    out = tmp_path / "report"
    md = run_eval(EvalSettings(data=data, model=folder, shots=2, seeds=[0, 1], size=size,
                               out=out, threads=1))
    r = json.loads((out / "report.json").read_text())
    assert r["test_images"] == 3 and [s["seed"] for s in r["per_seed"]] == [0, 1]
    assert 0.0 <= r["box_ap50_mean"] <= 1.0 and r["mask_ap50_mean"] is not None
    assert all(len(v) <= 2 for s in r["per_seed"] for v in s["prompts"].values())
    assert (out / "pr_curves.png").is_file() and "box AP50" in md
    assert r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0


def test_run_eval_measures_the_training_free_matcher(tmp_path: Path):
    """`--detector match`: the same protocol, no model folder, the matcher's own report."""
    from inspector.evaluation.run import EvalSettings, run_eval

    data = tmp_path / "tiny"
    test = _tiny_dataset(data, 128, n_test=6)
    out = tmp_path / "report"
    run_eval(EvalSettings(data=data, model=tmp_path / "no-model", shots=2, seeds=[0],
                          out=out, threads=1, detector="match",
                          params={"scales": [1.0]}))
    r = json.loads((out / "report.json").read_text())
    assert r["detector"] == "match" and r["model"] == "training-free-match"
    assert 0.0 <= r["box_ap50_mean"] <= 1.0 and r["enrol_s"]["max"] >= 0
    n_defects = sum(len(truths) for _, truths in test)
    assert sum(sum(v.values()) for v in r["errors"].values()) == n_defects, \
        "every test defect is accounted for once: found, below a clean FP, misclassified or missed"
    with pytest.raises(ValueError, match="detector.params.scales"):
        run_eval(EvalSettings(data=data, model=tmp_path, seeds=[0], out=out,
                              detector="match", params={"scales": []}))


def test_run_eval_confirm_vets_class_detections_with_the_good_part_branch(tmp_path: Path):
    """`--confirm`: the branch enrolled on the good parts drops class detections where the
    frame looks like them, as the service's WithUnknown does; it needs good parts."""
    from inspector.acquisition.synthetic_parts import frame_rng, good_part, iter_parts, save_coco
    from inspector.evaluation.run import EvalSettings, run_eval

    data, size = tmp_path / "tiny", 192
    train = list(iter_parts(4, 21, size, size, defect_rate=1.0))
    train += [(good_part(frame_rng(23, i), size, size), []) for i in range(6)]
    save_coco(data, train, "annotations_train.json",
              names=[f"tr{i}.png" for i in range(len(train))])
    save_coco(data, list(iter_parts(6, 22, size, size, defect_rate=0.7)),
              "annotations_test.json", names=[f"te{i}.png" for i in range(6)])
    runs = {}
    for confirm in (0.0, 0.6):
        out = tmp_path / f"report-{confirm}"
        run_eval(EvalSettings(data=data, model=tmp_path / "no-model", shots=2, seeds=[0],
                              out=out, threads=1, detector="match", normals=6,
                              confirm=confirm, params={"scales": [1.0]}))
        runs[confirm] = json.loads((out / "report.json").read_text())
    assert runs[0.6]["confirm"] == 0.6
    assert 0 < runs[0.6]["per_seed"][0]["detections"] < runs[0.0]["per_seed"][0]["detections"]
    with pytest.raises(ValueError, match="--normals"):
        run_eval(EvalSettings(data=data, model=tmp_path, seeds=[0], out=tmp_path / "r",
                              detector="match", confirm=0.5))


def test_run_eval_of_select_reports_the_choice_and_scores_as_the_chosen_detector(
        tmp_path: Path, tmp_path_factory):
    """`--detector select` (a recipe's default): each seed's report says which detector the
    enrolment kept and what each candidate scored on the held-out prompt examples, and the
    seed scores exactly as that detector evaluated alone."""
    from inspector.evaluation.run import EvalSettings, run_eval
    from tests.helpers.prompt_fixtures import runtime_model

    folder, size = runtime_model(tmp_path_factory)
    data = tmp_path / "tiny"
    _tiny_dataset(data, size, n_test=4)
    common = {"data": data, "model": folder, "shots": 2, "seeds": [0], "size": size,
              "threads": 1}
    run_eval(EvalSettings(**common, out=tmp_path / "select", detector="select"))
    r = json.loads((tmp_path / "select" / "report.json").read_text())
    sel = r["per_seed"][0]["selection"]
    assert r["detector"] == "select" and sel["kind"] in ("consensus", "prompt")
    assert len(sel["held_out_ap50"]) == 2 and sel["held_out_images"] > 0
    md = (tmp_path / "select" / "report.md").read_text()
    assert f"seed 0: {sel['label']} (" in md and sel["label"].startswith(
        ("match confirmed by tiny-model0", "tiny-model0 heads"))
    run_eval(EvalSettings(**common, out=tmp_path / "alone", detector=sel["kind"]))
    alone = json.loads((tmp_path / "alone" / "report.json").read_text())
    assert r["per_seed"][0]["box_ap50"] == alone["per_seed"][0]["box_ap50"]


def test_the_matcher_is_confirmed_by_the_recipe_default_only_with_the_default_model(
        tmp_path: Path):
    """A bare `inspector eval` is the product path: select confirms the matcher with the
    heads a recipe's default uses (engines/prompt-v3). With any other --model (a
    leave-one-out cell), that model confirms unless --support-model names another: a
    confirming model that saw the left-out domain would leak it into the cell."""
    import argparse

    from inspector.cli.model import DEFAULT_MODEL, _support_model
    from inspector.evaluation.run import EvalSettings, _detector

    def ns(model, support=None):
        return argparse.Namespace(model=str(model), support_model=support)

    assert _support_model(ns(DEFAULT_MODEL)) == DEFAULT_MODEL.parent / "prompt-v3"
    assert _support_model(ns("engines/prompt-v2-no-magtile")) is None
    assert _support_model(ns("engines/x", "engines/y")) == Path("engines/y")
    heads_of, other = "engines/prompt-v2-no-magtile", "engines/prompt-v3-no-magtile"
    for support, want in ((None, heads_of), (Path(other), other)):
        det = _detector(EvalSettings(data=tmp_path, model=Path(heads_of),
                                     detector="select", support_model=support))
        confirm, *heads = det.params.candidates
        assert confirm.kind == "consensus" and {h.kind for h in heads} == {"prompt"}
        assert confirm.params["support"]["params"]["model"] == want
        assert confirm.params["support"]["params"]["adapt"] == "off"
        # the heads of both models are candidates too, each once
        assert [h.params["model"] for h in heads] == list(dict.fromkeys([heads_of, want]))
