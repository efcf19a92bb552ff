"""Latency of the visual-prompt detector per 512 x 512 frame (ONNX Runtime, CPU).

Enrols the demo recipe's prompts, then times detect() (resize, encoder graph, head graph,
NMS and masks) on synthetic frames, for each thread count, side by side in one run with
the texture detector as a reference, the training-free prompt matcher (kind match, its
enrolment time in its row) for each thread count and once without its class check (whose
frozen-token encoding is its "encode" column), and the two together (kind consensus).
Prints a Markdown table (median and p99, ms).

    .venv/bin/python scripts/bench_detector.py [--frames 100] [--model engines/prompt-v2]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.acquisition.synthetic_parts import iter_parts
from inspector.inference.detectors.consensus import ConsensusDetector
from inspector.inference.detectors.match import MatchDetector
from inspector.inference.detectors.prompt import PromptDetector
from inspector.inference.detectors.texture import TextureDetector
from inspector.recipes.recipe import load_normals, load_prompts, load_recipe


def time_detector(det, frames: list[np.ndarray], desc: str) -> tuple[np.ndarray, dict]:
    det.detect(frames[0])  # warm-up
    ms: list[float] = []
    split: dict[str, list[float]] = defaultdict(list)
    for f in tqdm(frames, desc=desc, unit="frame", leave=False):
        t = time.perf_counter()
        det.detect(f)
        ms.append((time.perf_counter() - t) * 1e3)
        for k, v in getattr(det, "last_timing", {}).items():
            split[k].append(v)
    return np.array(ms), split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--model", default="engines/prompt-v2")
    ap.add_argument("--recipe", type=Path, default=Path("recipes/demo"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    cv2.setNumThreads(1)
    recipe = load_recipe(args.recipe)
    prompts, normals = load_prompts(recipe), load_normals(recipe)
    frames = [img for img, _ in iter_parts(args.frames, 7, 512, 512)]
    rows = []
    for threads in args.threads:
        det = PromptDetector({"model": args.model, "backend": "onnxruntime", "threads": threads})
        det.enroll(prompts, normals)
        ms, split = time_detector(det, frames, f"prompt, {threads} thread(s)")
        rows.append((f"prompt (ONNX Runtime, {threads} thread(s), input {det.params.size} px, "
                     f"{len(det.classes)} classes)", ms, split))
    for threads, check in [(t, True) for t in args.threads] + [(args.threads[-1], False)]:
        match = MatchDetector({"threads": threads, **({} if check else {"class_power": 0})})
        t0 = time.perf_counter()
        match.enroll(prompts, normals)
        enrol_s = time.perf_counter() - t0
        ms, split = time_detector(match, frames, f"match, {threads} thread(s)")
        rows.append((f"match (training-free, {threads} thread(s), {match.n_variants} template "
                     f"variants, enrolled in {enrol_s:.1f} s"
                     + ("" if check else "; class check off: no token encoding") + ")",
                     ms, split))
    # the support's heads are not adapted here: adaptation changes their weights, not their
    # graphs, so a frame costs the same (and the row does not wait for 100 s of fine-tuning)
    both = ConsensusDetector({"support": {"kind": "prompt", "params": {
        "model": args.model, "backend": "onnxruntime", "threads": 1, "adapt": "off"}}})
    both.enroll(prompts, normals)
    ms, split = time_detector(both, frames, "consensus")
    rows.append(("consensus (match 2 threads, confirmed by prompt 1 thread; heads not adapted)", ms,
                 split))
    tex = TextureDetector(recipe.detector.params if recipe.detector.kind == "texture" else {})
    tex.enroll(prompts, normals)
    ms, _ = time_detector(tex, frames, "texture")
    rows.append(("texture (reference, classical)", ms, {}))
    print(f"Detector latency per 512 x 512 frame, {args.frames} synthetic frames "
          f"(seed 7), {args.recipe} prompts enrolled; ms.\n")
    print("| detector | p50 | p99 | encode p50 | head + post p50 | ratio p50 vs texture |")
    print("|---|---:|---:|---:|---:|---:|")
    base = np.median(rows[-1][1])
    for name, ms, split in rows:
        enc = f"{np.median(split['encode_ms']):.1f}" if split.get("encode_ms") else "-"
        head = f"{np.median(split['head_ms']):.1f}" if split.get("head_ms") else "-"
        print(f"| {name} | {np.median(ms):.1f} | {np.percentile(ms, 99):.1f} | {enc} | {head} | "
              f"{np.median(ms) / base:.2f} |")


if __name__ == "__main__":
    main()
