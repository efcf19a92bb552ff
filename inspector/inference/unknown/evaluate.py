"""Evaluation of the unknown-defect branch on a COCO-layout dataset (MagTile).

Protocol (issue 8): images without annotations are defect-free; the normal references
are drawn, seeded, from the defect-free images of the train split (16, 64 and all of
them) and enrolled as a recipe's good parts are (bank, border scale, calibrated
threshold); every image of the test split is scored as the runtime scores it. Reported
per reference count: image AUROC (image score = maximum of the anomaly map, as the
runtime decides by default; and the mean of the top-k token distances, summed over the
scales in their units), pixel AUROC and AUPRO up to FPR 0.3 against the masks of the
COCO polygons, the share of good and of defective test images flagged at the calibrated
threshold, bank size and timing. Writes
`unknown_eval.json`, `unknown_eval.md` and an overlay sheet per reference count
(`overlays_<n>.png`: test images with the anomaly map and the true defect outlines).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.inference.unknown.branch import UnknownBranch, UnknownParams
from inspector.inference.unknown.metrics import aupro, auroc

TOPK = 10  # tokens averaged for the top-k image score
# the unknown branch's defaults before issue 21, for `eval-unknown --compare`
BEFORE_ISSUE_21 = {"search": "faiss-ivf", "nprobe": 4, "features": {"tile": None},
                   "border_rings": 1, "border_quantile": 0.95, "coarse": None}


@dataclass
class Sample:
    """One dataset image with its defect mask and whether it is defective."""

    file: str
    image: np.ndarray  # mono uint8
    mask: np.ndarray  # bool, full image: union of the defect polygons
    defective: bool


def load_split(dataset: Path, split: str, progress: bool = False) -> list[Sample]:
    """Images of `annotations_<split>.json` with their defect masks (polygons or RLE)."""
    from pycocotools import mask as mask_utils

    file = Path(dataset) / f"annotations_{split}.json"
    try:
        coco = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: cannot read COCO annotations: {exc}") from None
    anns: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    out = []
    for info in tqdm(sorted(coco["images"], key=lambda i: i["id"]), f"load {split}",
                     disable=not progress):
        path = Path(dataset) / "images" / info["file_name"]
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"{file}: image id {info['id']}: cannot read {path}")
        h, w = img.shape
        mask = np.zeros((h, w), bool)
        for a in anns.get(info["id"], []):
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg:
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg, dict):
                rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"),
                                                                       list) else seg
            else:  # a box only: the box is the mask
                x, y, bw, bh = (int(round(v)) for v in a["bbox"])
                mask[y:y + bh, x:x + bw] = True
                continue
            mask |= mask_utils.decode(rle).astype(bool)
        out.append(Sample(info["file_name"], img, mask, info["id"] in anns))
    return out


def pick_references(n_normals: int, count: int | None, seed: int) -> np.ndarray:
    """Seeded choice of `count` reference indices (None: all), nested across counts."""
    order = np.random.default_rng(seed).permutation(n_normals)
    return np.sort(order[: n_normals if count is None else min(count, n_normals)])


def _heat(img: np.ndarray, amap: np.ndarray, lo: float, hi: float, mask: np.ndarray,
          height: int) -> np.ndarray:
    """Image with the anomaly map as a colour overlay and the true outline in green."""
    a = np.clip((amap - lo) / max(hi - lo, 1e-9), 0, 1)
    heat = cv2.applyColorMap((a * 255).astype(np.uint8), cv2.COLORMAP_JET)
    base = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    out = cv2.addWeighted(base, 0.55, heat, 0.45, 0)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 0), 2)
    w = max(1, round(out.shape[1] * height / out.shape[0]))
    return cv2.resize(out, (w, height), interpolation=cv2.INTER_AREA)


def overlay_sheet(samples: list[Sample], maps: list[np.ndarray], scores: np.ndarray,
                  path: Path, per_row: int = 6, height: int = 200) -> None:
    """PNG sheet: the highest- and lowest-scored defective and good test images."""
    good = [i for i, s in enumerate(samples) if not s.defective]
    bad = [i for i, s in enumerate(samples) if s.defective]
    by = lambda idx: sorted(idx, key=lambda i: -scores[i])  # noqa: E731
    rows = [("defective, highest scores", by(bad)[:per_row]),
            ("defective, lowest scores", by(bad)[-per_row:]),
            ("good, highest scores", by(good)[:per_row]),
            ("good, lowest scores", by(good)[-per_row:])]
    normal_vals = np.concatenate([maps[i].ravel()[::7] for i in good]) if good else None
    lo = float(np.percentile(normal_vals, 50)) if normal_vals is not None else 0.0
    hi = float(max(np.percentile(normal_vals, 99.9), lo + 1e-6)) if normal_vals is not None \
        else float(max(m.max() for m in maps))
    lines = []
    for title, idx in rows:
        tiles = []
        for i in idx:
            t = _heat(samples[i].image, maps[i], lo, hi, samples[i].mask, height)
            cv2.putText(t, f"{scores[i]:.2f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(t)
        strip = np.hstack(tiles) if tiles else np.zeros((height, 10, 3), np.uint8)
        head = np.zeros((22, strip.shape[1], 3), np.uint8)
        cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        lines.append(np.vstack([head, strip]))
    width = max(x.shape[1] for x in lines)
    sheet = np.vstack([cv2.copyMakeBorder(x, 0, 4, 0, width - x.shape[1], cv2.BORDER_CONSTANT)
                       for x in lines])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"cannot write {path}")


def _score_rows(branch: UnknownBranch, train: list[Sample],
                train_tok: list[list[np.ndarray]], test: list[Sample],
                test_grids: list[list[np.ndarray]],
                counts: tuple[int | None, ...], seed: int, out: Path | None,
                progress: bool) -> list[dict]:
    """One row per reference count: the enrolment a recipe with those good parts gets
    (bank, border scale, calibrated threshold), then the test split's anomaly maps and
    part scores exactly as the runtime computes them, and the metrics."""
    labels = np.array([s.defective for s in test])
    rows = []
    for count in counts:
        idx = pick_references(len(train_tok), count, seed)
        t1 = time.perf_counter()
        cal = branch.enroll_tokens([train_tok[i] for i in idx],
                                   [train[i].image.shape for i in idx], progress)
        enrol_s = time.perf_counter() - t1
        maps, s_max, s_topk, s_part = [], [], [], []
        t2 = time.perf_counter()
        for s, g in tqdm(list(zip(test, test_grids, strict=True)), f"score ({len(idx)} refs)",
                         disable=not progress):
            dist = branch.distances(g)
            part, amap = branch.part_score(dist, s.image.shape)
            maps.append(amap)
            s_part.append(part)
            s_max.append(float(amap.max()))
            s_topk.append(branch.topk_score(dist, TOPK))
        search_ms = 1000 * (time.perf_counter() - t2) / len(test)
        s_max, s_topk, s_part = np.array(s_max), np.array(s_topk), np.array(s_part)
        pix_scores = np.concatenate([m.ravel() for m in maps])
        pix_labels = np.concatenate([s.mask.ravel() for s in test])
        flagged = s_part >= cal.threshold  # the recipe's decision at its calibrated threshold
        row = {
            "refs": int(len(idx)), "refs_label": "all" if count is None else str(count),
            "bank_tokens": branch.bank_tokens,
            "ref_tokens": int(sum(len(t) for i in idx for t in train_tok[i])),
            "image_auroc_max": auroc(s_max, labels), "image_auroc_topk": auroc(s_topk, labels),
            "pixel_auroc": auroc(pix_scores, pix_labels),
            "aupro_0.3": aupro(maps, [s.mask for s in test], 0.3),
            "threshold": cal.threshold, "target_rate": cal.target_rate,
            "heldout_rate": cal.achieved_rate,
            "good_flagged": float(flagged[~labels].mean()),
            "defective_flagged": float(flagged[labels].mean()),
            "border_scale": [np.round(sc.border_scale, 3).tolist() for sc in branch.scales],
            "units": [sc.unit for sc in branch.scales],
            "enrol_s": enrol_s, "score_ms_per_image": search_ms,
            "scores_max": s_max.round(5).tolist(),
        }
        rows.append(row)
        if out is not None:
            overlay_sheet(test, maps, s_max, Path(out) / f"overlays_{row['refs_label']}.png")
        del maps, pix_scores, pix_labels
    return rows


def _splits(dataset: Path, progress: bool) -> tuple[list[Sample], list[Sample]]:
    train = [s for s in load_split(dataset, "train", progress) if not s.defective]
    test = load_split(dataset, "test", progress)
    labels = np.array([s.defective for s in test])
    if len(train) == 0 or labels.all() or not labels.any():
        raise ValueError(f"{dataset}: need defect-free train images and both kinds in test")
    return train, test


def _encode(branch: UnknownBranch, train: list[Sample], test: list[Sample], progress: bool
            ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]], float]:
    t0 = time.perf_counter()
    train_tok = branch.tokens([s.image for s in train], progress, "train tokens")
    test_grids = [branch.grids(s.image)
                  for s in tqdm(test, "test tokens", disable=not progress)]
    return train_tok, test_grids, 1000 * (time.perf_counter() - t0) / (len(train) + len(test))


def evaluate(dataset: Path, out: Path, params: UnknownParams | None = None,
             counts: tuple[int | None, ...] = (16, 64, None), seed: int = 0,
             progress: bool = True) -> dict:
    """Run the protocol; write JSON, Markdown and overlay sheets to `out`."""
    params = params or UnknownParams()
    branch = UnknownBranch(params)
    train, test = _splits(dataset, progress)
    train_tok, test_grids, encode_ms = _encode(branch, train, test, progress)
    rows = _score_rows(branch, train, train_tok, test, test_grids, counts, seed, out,
                      progress)
    result = {
        "dataset": str(dataset), "seed": seed, "params": json.loads(params.model_dump_json()),
        "test_images": len(test), "test_defective": int(sum(s.defective for s in test)),
        "train_defect_free": len(train), "encode_ms_per_image": encode_ms,
        "test_files": [s.file for s in test],
        "test_labels": [int(s.defective) for s in test], "rows": rows,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unknown_eval.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "unknown_eval.md").write_text(markdown(result), encoding="utf-8")
    return result


def evaluate_steps(dataset: Path, out: Path, steps: list[tuple[str, UnknownParams]],
                   counts: tuple[int | None, ...] = (64, None), seed: int = 0,
                   progress: bool = True) -> dict:
    """The protocol for several parameter sets in one run, side by side (same images,
    same reference draw, same machine); tokens are encoded once per feature setting.
    Writes steps.json and steps.md to `out` and each step's overlays to `out/<step>/`."""
    train, test = _splits(dataset, progress)
    out = Path(out)
    cache_key, cached = None, None
    result: dict = {"dataset": str(dataset), "seed": seed, "test_images": len(test),
                    "test_defective": int(sum(s.defective for s in test)),
                    "train_defect_free": len(train), "steps": []}
    for name, params in steps:
        branch = UnknownBranch(params)
        key = params.features.model_dump_json() + str(params.coarse)
        if key != cache_key:
            cached = None  # one feature setting in memory at a time
            cached = _encode(branch, train, test, progress)
            cache_key = key
        assert cached is not None
        train_tok, test_grids, encode_ms = cached
        rows = _score_rows(branch, train, train_tok, test, test_grids, counts, seed,
                           out / name, progress)
        for r in rows:
            r.pop("scores_max")
        result["steps"].append({"step": name, "params": json.loads(params.model_dump_json()),
                                "encode_ms_per_image": encode_ms, "rows": rows})
        out.mkdir(parents=True, exist_ok=True)
        (out / "steps.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        (out / "steps.md").write_text(steps_markdown(result), encoding="utf-8")
    return result


def _flagged(row: dict) -> str:
    return f"{row['good_flagged']:.1%} / {row['defective_flagged']:.1%}"


def steps_markdown(result: dict) -> str:
    """One table: a row per step and reference count."""
    lines = [f"Unknown-defect branch on {Path(result['dataset']).name}, step by step: "
             f"{result['test_images']} test images ({result['test_defective']} defective), "
             f"references from {result['train_defect_free']} defect-free train images "
             f"(seed {result['seed']}), one run.", "",
             "| step | refs | image AUROC (map max) | image AUROC (top-10 mean) | pixel AUROC "
             "| AUPRO (FPR 0.3) | at the threshold: good / defective flagged | bank tokens "
             "| encode ms/image | search ms/image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for st in result["steps"]:
        for r in st["rows"]:
            lines.append(f"| {st['step']} | {r['refs_label']} | {r['image_auroc_max']:.3f} | "
                         f"{r['image_auroc_topk']:.3f} | {r['pixel_auroc']:.3f} | "
                         f"{r['aupro_0.3']:.3f} | {_flagged(r)} | {r['bank_tokens']} "
                         f"| {st['encode_ms_per_image']:.1f} | {r['score_ms_per_image']:.1f} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    """The evaluation result as a Markdown paragraph and one table row per reference count."""
    lines = [
        f"Unknown-defect branch on {Path(result['dataset']).name}: "
        f"{result['test_images']} test images ({result['test_defective']} defective), "
        f"normal references from {result['train_defect_free']} defect-free train images "
        f"(seed {result['seed']}).",
        "",
        "| normal refs | bank tokens (of) | image AUROC (map max) | image AUROC (top-"
        f"{TOPK} mean) | pixel AUROC | AUPRO (FPR 0.3) | at the threshold: good / defective "
        "flagged | enrolment s | score ms/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['refs_label']} ({r['refs']}) | {r['bank_tokens']} ({r['ref_tokens']}) | "
            f"{r['image_auroc_max']:.3f} | {r['image_auroc_topk']:.3f} | "
            f"{r['pixel_auroc']:.3f} | {r['aupro_0.3']:.3f} | {_flagged(r)} | {r['enrol_s']:.1f} | "
            f"{r['score_ms_per_image']:.1f} |")
    lines.append("")
    lines.append("Each row enrols as a recipe with those good parts does (bank, border scale, "
                 "threshold calibrated on held-out folds to the target false-alarm rate "
                 f"{result['rows'][0]['target_rate']:.0%}) and scores the test split as the "
                 "runtime does.")
    lines.append(f"Encoding: {result['encode_ms_per_image']:.1f} ms per image (ONNX Runtime, "
                 "CPU). Params: `" + json.dumps(result["params"]) + "`")
    return "\n".join(lines) + "\n"
