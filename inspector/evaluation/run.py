"""`inspector eval`: the visual-prompt protocol of docs/DESIGN.md on a COCO dataset.

For each prompt seed: draw k <= 4 prompts per class from distinct train images, enrol
them (SSPE prototypes), detect on every test image (defect-free ones included), score
box AP50 (and mask AP50 where the dataset has masks) with pycocotools. The encoder runs
once per test image (its tokens do not depend on the prompts, nor on an adaptation, which
leaves the encoder as it is); heads run per seed.

The product path: per seed, the detector is enrolled exactly as a recipe holding those
prompts (and, with `normals`, that many defect-free train images as its good parts) would
be, adaptation included when `adapt` is on; the report gives the time each enrolment
took and splits the misses per class (`inspector.evaluation.errors`).
Writes `report.json`, `report.md` and `pr_curves.png` (seed 0's box PR curves).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.core.coco import coco_ap50, decode_segmentation
from inspector.evaluation.errors import add_splits, error_split, ranking
from inspector.evaluation.protocol import draw_prompts
from inspector.evaluation.report import markdown, pr_plot
from inspector.inference.detectors.base import PromptExample


@dataclass
class EvalSettings:
    """What to evaluate and how: dataset, model, shots, seeds, backend and detector."""

    data: Path
    model: Path
    shots: int = 4
    seeds: list[int] | None = None
    backend: str = "onnxruntime"
    size: int = 320
    out: Path | None = None
    limit: int | None = None
    threads: int = 2
    min_score: float = 0.01
    normals: int = 0  # defect-free train images given to enrolment as good parts
    adapt: str = "off"  # detector.params.adapt: off | auto | on
    adapt_steps: int | None = None  # None: the detector's default
    # "prompt" (trained heads of `model`), "match" (training-free), "consensus" (the
    # matcher confirmed by the heads of `model`) or "select" (the better of the heads of
    # `model` and the matcher on the held-out prompt images, chosen at each enrolment)
    detector: str = "prompt"
    params: dict | None = None  # more detector.params (e.g. the match detector's)
    # unknown.params.confirm of the recipe (0: off): the good-part branch, enrolled on the
    # `normals`, drops class detections where its map stays below this share of its
    # threshold, as WithUnknown does in the service (needs normals)
    confirm: float = 0.0
    # the heads that confirm the matcher (`consensus`, and `select`'s first candidate);
    # None: those of `model`. A recipe's default is engines/prompt-v3 (CONFIRM_MODEL)
    support_model: Path | None = None


def draw_normals(train: dict, n: int, seed: int) -> list[dict]:
    """`n` defect-free train images (no annotation), seeded, sorted by id."""
    if n <= 0:
        return []
    annotated = {a["image_id"] for a in train["annotations"]}
    free = sorted((i for i in train["images"] if i["id"] not in annotated), key=lambda i: i["id"])
    if not free:
        raise ValueError("--normals: the train split has no defect-free image")
    rng = np.random.default_rng([seed, 1_000_003])
    pick = rng.choice(len(free), min(n, len(free)), replace=False)
    return [free[int(i)] for i in sorted(pick)]


def _read(folder: Path, info: dict) -> np.ndarray:
    path = folder / "images" / info["file_name"]
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return img


def _mask(ann: dict, hw: tuple[int, int]) -> np.ndarray | None:
    return decode_segmentation(ann.get("segmentation"), *hw)


def _rle(det, hw: tuple[int, int]) -> dict:
    from pycocotools import mask as mask_utils

    full = np.zeros(hw, np.uint8, order="F")
    x0, y0 = int(round(det.bbox[0])), int(round(det.bbox[1]))
    mh, mw = det.mask.shape
    full[y0:y0 + mh, x0:x0 + mw] = det.mask[: hw[0] - y0, : hw[1] - x0]
    rle = mask_utils.encode(full)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def load_split(folder: Path, split: str) -> dict:
    """The COCO annotations of one split (`annotations_<split>.json`) of a dataset folder."""
    path = folder / f"annotations_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (a dataset needs annotations_train.json "
                                "and annotations_test.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _model_name(s: EvalSettings) -> str:
    both = s.model.name + (f"+{s.support_model.name}"
                           if s.support_model and s.support_model != s.model else "")
    return {"prompt": s.model.name, "match": "training-free-match"}.get(
        s.detector, f"{s.detector}-{both}")


def _merged(base: dict, more: dict) -> dict:
    """`base` updated by `more`, nested dicts merged rather than replaced."""
    out = dict(base)
    for k, v in more.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _detector(s: EvalSettings):
    """The detector a recipe with these settings would build (not yet enrolled).

    `consensus`: the matcher confirmed by the trained heads of `support_model` (else
    `model`; adapted as `adapt` says); `params` merge into that, e.g. {"gain": 1,
    "support": {"params": ...}}. `select`: that consensus, the heads of `model` alone
    or those of `support_model` alone, whichever finds the held-out prompt examples
    better (detectors/select.py); `params` replace its defaults.
    """
    from inspector.inference.detectors import build_detector
    from inspector.inference.detectors.select import confirmed_match
    from inspector.recipes.recipe import DetectorSettings

    prompt = {"model": str(s.model), "backend": s.backend, "size": s.size,
              "threads": s.threads, "min_score": s.min_score, "adapt": s.adapt}
    if s.adapt_steps:
        prompt["adapt_steps"] = s.adapt_steps
    support = {**prompt, "model": str(s.support_model or s.model)}
    params = {"match": {"min_score": 0.0}, "prompt": prompt,
              "consensus": {"primary": {"kind": "match", "params": {"min_score": 0.0}},
                            "support": {"kind": "prompt", "params": support}},
              "select": {"candidates": [
                  confirmed_match(support, {"min_score": 0.0}).model_dump(),
                  {"kind": "prompt", "params": prompt}]
                  + ([{"kind": "prompt", "params": support}]
                     if support["model"] != prompt["model"] else [])},
              }[s.detector]
    return build_detector(DetectorSettings(kind=s.detector,
                                           params=_merged(params, s.params or {})))


def _confirming_branch(confirm: float, normals: list[np.ndarray]):
    """The good-part branch that vets class detections (`confirm` > 0), enrolled on the
    good parts as a recipe's unknown rule would be, at the demo recipe's false-alarm
    target (0.1 %, which sets the threshold `confirm` is a share of); None when off."""
    if confirm <= 0:
        return None
    from inspector.inference.unknown.branch import UnknownBranch

    branch = UnknownBranch({"confirm": confirm}, target_rate=0.001)
    if len(normals) < branch.params.min_normals:
        raise ValueError(f"--confirm needs at least {branch.params.min_normals} good parts "
                         f"(--normals), got {len(normals)}")
    branch.enroll(normals)
    return branch


def run_eval(s: EvalSettings) -> str:
    """Run the protocol; write the reports; return the Markdown report."""
    seeds = s.seeds or [0, 1, 2]
    train, test = load_split(s.data, "train"), load_split(s.data, "test")
    if s.limit:
        test["images"] = test["images"][: s.limit]
        keep = {i["id"] for i in test["images"]}
        test["annotations"] = [a for a in test["annotations"] if a["image_id"] in keep]
    has_masks = any(a.get("segmentation") for a in test["annotations"])
    names = {c["id"]: c["name"] for c in test["categories"]}
    det = _detector(s)
    # tokens of every test image, once
    tokens, encode_ms = {}, []
    frames: dict[int, np.ndarray] = {}  # kept for the confirming branch, read once
    for info in tqdm(test["images"], desc=f"encode {s.data.name} test", unit="img"):
        img = _read(s.data, info)
        t = time.perf_counter()
        tokens[info["id"]] = (det.encode(img), img.shape[:2])
        encode_ms.append((time.perf_counter() - t) * 1e3)
        if s.confirm > 0:
            frames[info["id"]] = img
    train_imgs = {i["id"]: i for i in train["images"]}
    per_seed, total_ms, splits = [], [], []
    for seed in seeds:
        prompts = []
        for cat, anns in draw_prompts(train, s.shots, seed).items():
            for a in anns:
                img = _read(s.data, train_imgs[a["image_id"]])
                prompts.append(PromptExample(str(a["id"]), names[cat], img,
                                             tuple(float(v) for v in a["bbox"]),
                                             _mask(a, img.shape[:2])))
        normals = [_read(s.data, i) for i in draw_normals(train, s.normals, seed)]
        t_enrol = time.perf_counter()
        det.enroll(prompts, normals)
        branch = _confirming_branch(s.confirm, normals)
        enrol_s = time.perf_counter() - t_enrol
        cat_of = {n: c for c, n in names.items()}
        dets_box, dets_segm = [], []
        for n, info in enumerate(tqdm(test["images"], desc=f"seed {seed}", unit="img")):
            tok, hw = tokens[info["id"]]
            t = time.perf_counter()
            found = det.detect_tokens(tok, hw)
            if branch is not None:  # as WithUnknown.detect: on the frame, beside the detector
                amap = branch.anomaly_map(frames[info["id"]])
                found = [d for d in found if d.unknown or branch.confirms(d, amap)]
            total_ms.append(encode_ms[n] + (time.perf_counter() - t) * 1e3)
            for d in found:
                r = {"image_id": info["id"], "category_id": cat_of[d.cls],
                     "bbox": [round(float(v), 2) for v in d.bbox], "score": float(d.score)}
                dets_box.append(r)
                if has_masks and d.mask is not None:
                    dets_segm.append({**r, "segmentation": _rle(d, hw)})
        box = coco_ap50(test, dets_box, "bbox")
        segm = coco_ap50(test, dets_segm, "segm") if has_masks else None
        splits.append(error_split(test, dets_box))
        per_seed.append({"seed": seed, "enrol_s": round(enrol_s, 2),
                         "ranking": ranking(test, dets_box, split=splits[-1]),
                         "adapt": getattr(det, "adapt_record", None), "errors": splits[-1],
                         "selection": getattr(det, "selection", None),
                         "box_ap50": box["ap50"], "box_per_class": box["per_class"],
                         "mask_ap50": segm["ap50"] if segm else None,
                         "mask_per_class": segm["per_class"] if segm else None,
                         "prompts": {names[c]: [a["id"] for a in v]
                                     for c, v in draw_prompts(train, s.shots, seed).items()},
                         "detections": len(dets_box), "_pr": box["pr"]})

    def mean(key: str, name: str | None = None) -> float | None:
        vals = [(p[key] if name is None else (p[key] or {}).get(name)) for p in per_seed]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    classes = [names[c] for c in sorted(names)]
    backend = getattr(getattr(det, "support", det), "backend", None)  # the trained heads'
    defect_free = len({i["id"] for i in test["images"]}
                      - {a["image_id"] for a in test["annotations"]})
    result = {
        "dataset": s.data.name, "model": _model_name(s), "detector": s.detector,
        "shots": s.shots, "seeds": seeds,
        "normals": s.normals, "adapt": s.adapt, "confirm": s.confirm,
        "enrol_s": {"mean": float(np.mean([p["enrol_s"] for p in per_seed])),
                    "max": float(np.max([p["enrol_s"] for p in per_seed]))},
        "errors": add_splits(splits),
        "backend": getattr(backend, "name", "onnxruntime"),
        "size": s.size if s.detector != "match" else None, "threads": s.threads,
        "model_sha256": det.model_sha256, "classes": classes,
        "test_images": len(test["images"]), "defect_free_test_images": defect_free,
        "box_ap50_mean": mean("box_ap50"),
        "mask_ap50_mean": mean("mask_ap50") if has_masks else None,
        "per_class_box_ap50": {n: mean("box_per_class", n) for n in classes},
        "per_class_mask_ap50": {n: mean("mask_per_class", n) for n in classes},
        "per_seed": [{k: v for k, v in p.items() if k != "_pr"} for p in per_seed],
        "latency_ms": {"p50": float(np.percentile(total_ms, 50)),
                       "p99": float(np.percentile(total_ms, 99)),
                       "encode_p50": float(np.percentile(encode_ms, 50))},
    }
    tag = ((f"-n{s.normals}" if s.normals else "") + ("" if s.adapt == "off" else "-adapt")
           + (f"-confirm{s.confirm:g}" if s.confirm else ""))
    out = s.out or Path("out") / f"eval-{s.data.name}-{_model_name(s)}{tag}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    md = markdown(result)
    (out / "report.md").write_text(md + "\n", encoding="utf-8")
    pr_plot(per_seed[0]["_pr"], out / "pr_curves.png",
            f"{s.data.name}, box PR at IoU 0.5, seed {seeds[0]}, k={s.shots}")
    return md + f"\n\nReports: {out}/report.json, report.md, pr_curves.png"
