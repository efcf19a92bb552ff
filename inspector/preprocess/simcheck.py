"""Run the fused CUDA kernel in numba's CUDA simulator against a reference (tests).

numba picks the simulator when `numba.cuda` is first imported, from
NUMBA_ENABLE_CUDASIM=1, so `run_in_simulator` starts ``python -m
inspector.preprocess.simcheck`` in a fresh process with the variable set and reads one
JSON line back. The simulator runs every thread in Python: the frames are small, chosen
to reach each code path (flat field on/off, undistortion on/off, 8- and 16-bit frames,
an ROI off the origin, maps that leave the frame). Each case compares the kernel with
`reference` (float64, the kernel's arithmetic) and with the CPU path (numba flat field,
then cv2.remap).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

TOLERANCE = 1  # grey levels, kernel vs reference (float32 vs float64 rounding ties)
CPU_TOLERANCE = 1  # grey levels, kernel vs CPU path (cv2.remap's own rounding), smooth frames


def reference(frame: np.ndarray, a: np.ndarray | None, b: np.ndarray | None,
              mapx: np.ndarray | None, mapy: np.ndarray | None,
              roi: tuple[int, int, int, int]) -> np.ndarray:
    """What the kernel computes, in float64 NumPy."""
    x0, y0, w, h = roi
    H, W = frame.shape
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    if mapx is not None:
        sx = mapx[y0:y0 + h, x0:x0 + w].astype(np.float64)
        sy = mapy[y0:y0 + h, x0:x0 + w].astype(np.float64)
    else:
        sx, sy = (jj + x0).astype(np.float64), (ii + y0).astype(np.float64)
    c0, r0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    ax, ay = sx - c0, sy - r0
    c1, r1 = np.clip(c0 + 1, 0, W - 1), np.clip(r0 + 1, 0, H - 1)
    c0, r0 = np.clip(c0, 0, W - 1), np.clip(r0, 0, H - 1)

    def val(r, c):
        if a is not None:
            return np.floor(np.clip(frame[r, c] * a[r, c].astype(np.float64)
                                    + b[r, c].astype(np.float64), 0, 255))
        return (frame[r, c] >> (8 if frame.dtype == np.uint16 else 0)).astype(np.float64)

    acc = (val(r0, c0) * (1 - ax) * (1 - ay) + val(r0, c1) * ax * (1 - ay)
           + val(r1, c0) * (1 - ax) * ay + val(r1, c1) * ax * ay)
    return np.minimum(acc + 0.5, 255).astype(np.uint8)


def _cases() -> list[dict]:
    import cv2

    rng = np.random.default_rng(3)
    H, W = 30, 40
    smooth = cv2.GaussianBlur(rng.uniform(20, 230, (H, W)), (0, 0), 2.0)
    f8 = np.clip(smooth, 0, 255).astype(np.uint8)
    f16 = (np.clip(smooth, 0, 255) * 256).astype(np.uint16)
    K = np.array([[45.0, 0, 19.5], [0, 45.0, 14.5], [0, 0, 1]])
    barrel = (K, np.array([-0.3, 0.1, 0.001, -0.001, 0.0]))
    pincushion = (K, np.array([0.4, 0.0, 0.0, 0.0, 0.0]))  # samples beyond the frame
    dark = rng.uniform(2, 8, (H, W))
    gain = 1.0 + 0.3 * rng.random((H, W))
    return [
        {"name": "uint8 flat + barrel, ROI off origin", "frame": f8, "flat": (dark, gain),
         "lens": barrel, "roi": (5, 3, 27, 21)},
        {"name": "uint16 flat, no lens", "frame": f16, "flat": (dark * 256, gain),
         "lens": None, "roi": (2, 4, 33, 19)},
        {"name": "uint8 pincushion (border), full frame", "frame": f8, "flat": None,
         "lens": pincushion, "roi": None},
        {"name": "uint16 barrel, no flat", "frame": f16, "flat": None, "lens": barrel,
         "roi": (0, 0, 40, 30)},
    ]


def _check() -> dict:
    from numba.core import config

    if not config.ENABLE_CUDASIM:
        raise RuntimeError("simcheck must run with NUMBA_ENABLE_CUDASIM=1 (use run_in_simulator)")
    from inspector.calibration.flatfield import FlatField
    from inspector.preprocess.corrector import Corrector

    report: dict = {"cases": []}
    for case in _cases():
        frame = case["frame"]
        h, w = frame.shape
        flat = None
        if case["flat"] is not None:
            flat = FlatField.from_maps(case["flat"][0].astype(np.float32),
                                       case["flat"][1].astype(np.float32), frame.dtype)
        gpu = Corrector((w, h), flat, case["lens"], backend="cuda")
        cpu = Corrector((w, h), flat, case["lens"], backend="cpu")
        out_gpu, off = gpu.correct(frame, case["roi"])
        out_cpu, off_cpu = cpu.correct(frame, case["roi"])
        roi = gpu.plan(case["roi"]).roi
        ref = reference(frame, None if flat is None else flat.a, None if flat is None else flat.b,
                        gpu.mapx, gpu.mapy, roi)
        report["cases"].append({
            "name": case["name"],
            "shape": list(out_gpu.shape),
            "same_offset": list(off) == list(off_cpu) == list(roi[:2]),
            "max_err_reference": int(np.abs(out_gpu.astype(int) - ref).max()),
            "max_err_cpu": int(np.abs(out_gpu.astype(int) - out_cpu).max()),
            "mean_err_cpu": float(np.abs(out_gpu.astype(int) - out_cpu).mean()),
        })
    return report


def run_in_simulator(timeout: float = 300.0) -> dict:
    """Run `_check` in a child process under the simulator; returns its report."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "inspector.preprocess.simcheck"], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"simulator run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_check()))
