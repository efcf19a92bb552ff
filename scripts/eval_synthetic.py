"""Measure the recipe's detector on synthetic parts with known ground truth.

Enrols the detector on a recipe (default recipes/demo), runs it on N synthetic parts from
a seed disjoint from the recipe's, and prints a Markdown table.

Matching rule: a detection and a truth match when their boxes overlap with IoU >= 0.1;
pairs are taken greedily by highest IoU, one detection per truth. Recall and precision
are class-agnostic (did we find the defect / is the detection a real defect); the
class-correct rate is the share of found defects whose class is right. Image-level
numbers use the raw detector output (any detection = NG), before the recipe's decision
rules. Time is detect() alone on one core, median over the frames.

A second table is what the operator sees: only the detections the recipe's rules count
(threshold and minimum area of their class, the unknown rule's for `unknown`). A defect is
found when one of them overlaps it (IoU >= 0.1), and named right when the highest-scoring
of those has its class (the class the result reports first).

The detector is the recipe's as the service runs it: with the good-part unknown branch
when the recipe enables it (`--inner-only`: the class detector alone).

    .venv/bin/python scripts/eval_synthetic.py [--n 200] [--seed 7] [--recipe recipes/demo]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.acquisition.synthetic_parts import (
    DEFECT_KINDS,
    box_iou,
    iter_parts,
    match_truth,
)
from inspector.decision.verdict import decide
from inspector.inference.detectors import build_detector
from inspector.recipes.cache import detector_for
from inspector.recipes.recipe import load_normals, load_prompts, load_recipe


def evaluate(recipe_path: Path, n: int, seed: int, defect_rate: float, max_defects: int,
             inner_only: bool = False) -> str:
    """Run the evaluation and return the Markdown report."""
    cv2.setNumThreads(1)
    recipe = load_recipe(recipe_path)
    det = build_detector(recipe.detector) if inner_only else detector_for(recipe)
    t0 = time.perf_counter()
    det.enroll(load_prompts(recipe), load_normals(recipe))
    enroll_s = time.perf_counter() - t0
    h, w = load_normals(recipe)[0].shape
    truths_n, found, correct = Counter(), Counter(), Counter()
    labelled, labelled_ok = Counter(), Counter()
    n_det = n_det_ok = 0
    ng_imgs = ng_hit = good_imgs = good_rej = 0
    ms = []
    found_t, right_t = Counter(), Counter()
    ng_hit_t = good_rej_t = 0
    parts = iter_parts(n, seed, w, h, DEFECT_KINDS, defect_rate, max_defects)
    for img, truths in tqdm(parts, total=n, desc="eval", unit="part"):
        t = time.perf_counter()
        dets = det.detect(img)
        ms.append((time.perf_counter() - t) * 1e3)
        pairs = match_truth(truths, dets)
        for tr in truths:
            truths_n[tr.kind] += 1
        matched_d = {j: i for i, j in pairs}
        for i, j in pairs:
            found[truths[i].kind] += 1
            correct[truths[i].kind] += dets[j].cls == truths[i].kind
        for j, d in enumerate(dets):
            labelled[d.cls] += 1
            if j in matched_d:
                n_det_ok += 1
                labelled_ok[d.cls] += truths[matched_d[j]].kind == d.cls or d.cls == "unknown"
        n_det += len(dets)
        verdict = decide(dets, recipe, recipe.mm_per_px)
        shown = [d for d, counted in zip(dets, verdict.accepted, strict=True) if counted]
        for tr in truths:
            over = [d for d in shown if box_iou(tr.bbox, d.bbox) >= 0.1]
            if over:
                found_t[tr.kind] += 1
                right_t[tr.kind] += max(over, key=lambda d: d.score).cls == tr.kind
        if truths:
            ng_imgs += 1
            ng_hit += bool(dets)
            ng_hit_t += bool(shown)
        else:
            good_imgs += 1
            good_rej += bool(dets)
            good_rej_t += bool(shown)

    def pct(a: float, b: float) -> str:
        return f"{100 * a / b:.1f} %" if b else "n/a"

    lines = [
        f"Detector `{det.kind}` on recipe `{recipe.id}` rev {recipe.rev}: "
        f"{n} synthetic parts (seed {seed}, defect rate {defect_rate}, "
        f"up to {max_defects} defects), {w}x{h}; match = box IoU >= 0.1.",
        "",
        "| class | truths | found | recall | class correct | detections | precision |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in DEFECT_KINDS:
        lines.append(f"| {k} | {truths_n[k]} | {found[k]} | {pct(found[k], truths_n[k])} | "
                     f"{pct(correct[k], found[k])} | {labelled[k]} | "
                     f"{pct(labelled_ok[k], labelled[k])} |")
    lines.append(f"| unknown | - | - | - | - | {labelled['unknown']} | "
                 f"{pct(labelled_ok['unknown'], labelled['unknown'])} |")
    tot_t, tot_f, tot_c = sum(truths_n.values()), sum(found.values()), sum(correct.values())
    lines.append(f"| **all** | {tot_t} | {tot_f} | {pct(tot_f, tot_t)} | {pct(tot_c, tot_f)} | "
                 f"{n_det} | {pct(n_det_ok, n_det)} |")
    lines += [
        "",
        "| image level | value |",
        "|---|---:|",
        f"| NG recall (defective parts with >= 1 detection) | {pct(ng_hit, ng_imgs)} "
        f"({ng_hit}/{ng_imgs}) |",
        f"| false reject (good parts with >= 1 detection) | {pct(good_rej, good_imgs)} "
        f"({good_rej}/{good_imgs}) |",
        f"| ms per frame, median (p95) | {np.median(ms):.1f} ({np.percentile(ms, 95):.1f}) |",
        f"| enrol time | {enroll_s:.1f} s |",
        "",
        "Per-class precision: detections labelled with the class that match a truth of that "
        "class; `unknown`: those matching any truth; **all**: class-agnostic.",
        "",
        "At the recipe's thresholds (what the operator sees): found = a detection at or "
        "above its class's threshold overlaps the defect; named right = the highest-scoring "
        "such detection has the defect's class.",
        "",
        "| class | truths | found | named right (of found) |",
        "|---|---:|---:|---:|",
    ]
    for k in DEFECT_KINDS:
        lines.append(f"| {k} | {truths_n[k]} | {pct(found_t[k], truths_n[k])} | "
                     f"{pct(right_t[k], found_t[k])} |")
    ft, rt = sum(found_t.values()), sum(right_t.values())
    lines += [f"| **all** | {tot_t} | {pct(ft, tot_t)} | {pct(rt, ft)} |", "",
              f"Parts rejected at the thresholds: defective {pct(ng_hit_t, ng_imgs)} "
              f"({ng_hit_t}/{ng_imgs}), good {pct(good_rej_t, good_imgs)} "
              f"({good_rej_t}/{good_imgs})."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=Path("recipes/demo"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7, help="disjoint from the recipe's 1000/1001")
    ap.add_argument("--defect-rate", type=float, default=0.5)
    ap.add_argument("--max-defects", type=int, default=2)
    ap.add_argument("--inner-only", action="store_true",
                    help="the class detector alone, without the recipe's unknown branch")
    args = ap.parse_args()
    print(evaluate(args.recipe, args.n, args.seed, args.defect_rate, args.max_defects,
                   args.inner_only))


if __name__ == "__main__":
    main()
