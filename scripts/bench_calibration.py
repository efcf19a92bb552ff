"""Benchmark the per-frame cost of the calibration corrections (issue 10).

For each frame size (1024x1024 and 2448x2048 by default) a camera with barrel
distortion and 35 % vignetting is set up in memory (no files), and each stage is timed
on the same Mono8 frame, side by side in one run:

* flat field: the numba one-pass kernel used at run time, and the same expression in
  NumPy (the baseline it replaces);
* undistortion: cv2.remap with the float32 maps from initUndistortRectifyMap used at
  run time, and with the same maps in OpenCV's fixed-point form (CV_16SC2);
* ROI crop: the slice the plain path takes;
* totals: `Corrector` on the full frame, and with a centred ROI of half the width and
  height (only that ROI's part of the frame is corrected), and the uncalibrated
  preprocess (mono + ROI crop) for reference;
* once per camera / per ROI: building the maps, and cutting them to an ROI (one
  measurement each).

Prints a Markdown table of medians (and 90th percentiles) in milliseconds.
Usage: .venv/bin/python scripts/bench_calibration.py [--sizes 1024x1024 2448x2048] [--reps 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.calibration.flatfield import FlatField  # noqa: E402
from inspector.calibration.render import CameraModel  # noqa: E402
from inspector.preprocess.corrector import Corrector  # noqa: E402
from inspector.preprocess.frame import preprocess  # noqa: E402


def timed(fn: Callable[[], object], reps: int, warmup: int = 3) -> tuple[float, float]:
    """(median, p90) wall time in ms over `reps` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def setup(w: int, h: int) -> tuple[np.ndarray, FlatField, tuple[np.ndarray, np.ndarray]]:
    f = 0.9 * max(w, h)
    K = np.array([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1]])
    dist = np.array([-0.25, 0.08, 0.0005, -0.0003, 0.0])
    cam = CameraModel(w, h, K, dist, vignetting=0.35, dark_level=6.0, prnu=0.01)
    gain_true, dark = cam.sensor()
    gain = (1.0 / (cam.illumination() * gain_true)).astype(np.float32)
    flat = FlatField.from_maps(dark.astype(np.float32), gain, np.uint8)
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 1.5)
    return frame, flat, (K, dist)


def bench(w: int, h: int, reps: int) -> list[tuple[str, float, float]]:
    frame, flat, lens = setup(w, h)
    rows: list[tuple[str, float, float]] = []
    t0 = time.perf_counter()
    corr = Corrector((w, h), flat, lens, mm_per_px=0.05, backend="cpu")
    init_ms = (time.perf_counter() - t0) * 1000
    full = corr.plan(None)
    roi = (w // 4, h // 4, w // 2, h // 2)
    t0 = time.perf_counter()
    corr.plan(roi)
    plan_ms = (time.perf_counter() - t0) * 1000
    mapx, mapy = corr.mapx, corr.mapy
    map1, map2 = cv2.convertMaps(mapx, mapy, cv2.CV_16SC2)
    out = np.empty((h, w), np.uint8)
    part = flat.apply(frame)

    def numpy_flat() -> np.ndarray:
        return np.clip(frame * flat.a + flat.b, 0, 255).astype(np.uint8)

    rows.append(("flat field, numba one pass (used)", *timed(lambda: flat.apply(frame, out=out),
                                                             reps)))
    rows.append(("flat field, NumPy expression (baseline)", *timed(numpy_flat, reps)))
    rows.append(("undistort, cv2.remap float32 maps (used)", *timed(
        lambda: cv2.remap(part, full.map_x, full.map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE), reps)))
    rows.append(("undistort, cv2.remap fixed-point maps (baseline)", *timed(
        lambda: cv2.remap(part, map1, map2, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE), reps)))
    rows.append(("ROI crop (slice, no copy)", *timed(lambda: part[roi[1]:roi[1] + roi[3],
                                                              roi[0]:roi[0] + roi[2]], reps)))
    rows.append(("total: Corrector, full frame", *timed(lambda: corr(frame, None), reps)))
    rows.append(("total: Corrector, centred ROI w/2 x h/2", *timed(lambda: corr(frame, roi),
                                                                   reps)))
    rows.append(("uncalibrated preprocess (mono + ROI)", *timed(lambda: preprocess(frame, roi),
                                                                reps)))
    rows.append(("once per camera: Corrector built (maps; numba kernel loaded at first)",
                 init_ms, init_ms))
    rows.append(("once per ROI: cut and shift the maps", plan_ms, plan_ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["1024x1024", "2448x2048"])
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    results = {s: bench(*s, args.reps) for s in sizes}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Calibration corrections per frame, Mono8, CPU ({platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}, cv2 threads "
          f"{cv2.getNumThreads()}), {args.reps} frames each, ms (median / p90)\n")
    head = "| stage | " + " | ".join(f"{w}x{h}" for w, h in sizes) + " |"
    print(head)
    print("|---|" + "---|" * len(sizes))
    names = [r[0] for r in results[sizes[0]]]
    for k, name in enumerate(names):
        cells = []
        for s in sizes:
            med, p90 = results[s][k][1], results[s][k][2]
            cells.append(f"{med:.2f}" if name.startswith("once") else f"{med:.2f} / {p90:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for s in sizes:
        r = {n: m for n, m, _ in results[s]}
        print(f"{s[0]}x{s[1]}: numba flat field {r[names[1]] / r[names[0]]:.1f}x faster than "
              f"NumPy; remap with float32 maps {r[names[3]] / r[names[2]]:.1f}x faster than "
              "with fixed-point maps")


if __name__ == "__main__":
    main()
