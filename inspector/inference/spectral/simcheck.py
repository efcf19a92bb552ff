"""Run the CUDA kernel in numba's CUDA simulator against the reference (CI, benchmark).

numba picks the simulator when `numba.cuda` is first imported, from the environment
variable ``NUMBA_ENABLE_CUDASIM=1``; a process that already imported it for real
cannot switch. `run_in_simulator` therefore starts ``python -m
inspector.inference.spectral.simcheck`` in a fresh process with the variable set and reads one
JSON line back. The simulator interprets every thread in Python, so the cases are a
handful of small RoIs chosen to cover each code path: fractional and scaled boxes,
boxes crossing or outside the border, tiny boxes, both S, all dtypes, log and window
off, exact 90-degree rotation, circular shift (window off) and a flat patch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

TOLERANCE = 1e-5  # max |profile difference|, profiles sum to 1 (float32 vs float64)
DC_TOLERANCE = 1e-5  # max |dc difference|, intensities in full-scale units


def _cases() -> list[dict]:
    """Small, deterministic inputs: (name, frame, boxes, size, kwargs, threads)."""
    rng = np.random.default_rng(7)
    f8 = rng.integers(0, 256, (40, 52), dtype=np.uint8)
    f16 = rng.integers(0, 65536, (40, 52), dtype=np.uint16)
    f32 = rng.random((40, 52), dtype=np.float32)
    mixed = np.array(
        [[3.3, 4.7, 30.2, 21.5], [-5.0, -6.0, 20.0, 20.0], [40.0, 30.0, 25.0, 31.0],
         [10.2, 11.9, 0.6, 1.3], [60.0, 50.0, 8.0, 8.0], [-20.4, 38.2, 7.65, 40.0]]
    )  # scaled, crossing the border, inside, tiny, outside (flat), nearly flat
    one = np.array([[5.5, 2.25, 37.0, 29.0]])
    return [
        {"name": "uint8 S32 mixed boxes (32 threads)", "frame": f8, "boxes": mixed,
         "size": 32, "kw": {}, "threads": 32},
        {"name": "uint8 S32 mixed boxes (64 threads)", "frame": f8, "boxes": mixed[:2],
         "size": 32, "kw": {}, "threads": 64},
        {"name": "uint8 S64 scaled box", "frame": f8, "boxes": one, "size": 64, "kw": {},
         "threads": 64},
        {"name": "uint16 S32 rings=5", "frame": f16, "boxes": one, "size": 32,
         "kw": {"rings": 5}, "threads": 32},
        {"name": "float32 S32 log=False", "frame": f32, "boxes": one, "size": 32,
         "kw": {"log": False}, "threads": 32},
        {"name": "float32 S32 window=False", "frame": f32, "boxes": one, "size": 32,
         "kw": {"window": False}, "threads": 32},
    ]


def _check() -> dict:
    """Simulated kernel vs reference on every case, plus three exact properties."""
    from numba.core import config

    if not config.ENABLE_CUDASIM:
        raise RuntimeError("simcheck must run with NUMBA_ENABLE_CUDASIM=1 (use run_in_simulator)")
    from inspector.inference.spectral.cuda_kernel import radial_profiles_cuda
    from inspector.inference.spectral.reference import radial_profiles_reference
    from inspector.inference.spectral.spec import check_rings

    report: dict = {"cases": []}
    for case in _cases():
        size = case["size"]
        kw = dict(case["kw"])
        rings = check_rings(kw.pop("rings", None), size)
        prof, dc = radial_profiles_cuda(case["frame"], case["boxes"], size, rings,
                                        threads=case["threads"], **kw)
        ref, ref_dc = radial_profiles_reference(case["frame"], case["boxes"], size=size,
                                                rings=rings, return_dc=True, **kw)
        report["cases"].append({
            "name": case["name"],
            "rois": int(len(case["boxes"])),
            "max_abs_err": float(np.abs(prof - ref).max()),
            "max_dc_err": float(np.abs(dc - ref_dc).max()),
            "sums": [float(s) for s in prof.sum(axis=1)],
        })
    rng = np.random.default_rng(11)
    patch = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    full = np.array([[0.0, 0.0, 32.0, 32.0]])
    base, _ = radial_profiles_cuda(patch, full, 32, 16, threads=32)
    rot, _ = radial_profiles_cuda(np.ascontiguousarray(np.rot90(patch)), full, 32, 16,
                                  threads=32)
    report["rot90_max_diff"] = float(np.abs(base - rot).max())
    plain, _ = radial_profiles_cuda(patch, full, 32, 16, window=False, threads=32)
    rolled, _ = radial_profiles_cuda(np.ascontiguousarray(np.roll(patch, (5, -9), (0, 1))),
                                     full, 32, 16, window=False, threads=32)
    report["shift_max_diff"] = float(np.abs(plain - rolled).max())
    flat = np.full((20, 20), 77, dtype=np.uint8)
    fprof, fdc = radial_profiles_cuda(flat, np.array([[2.5, 3.0, 9.0, 7.0]]), 32, 16,
                                      threads=32)
    report["flat_max"] = float(np.abs(fprof).max())
    report["flat_dc_err"] = float(abs(fdc[0] - 77 / 255))
    return report


def run_in_simulator(timeout: float = 300.0) -> dict:
    """Run `_check` in a child process under the simulator; returns its report."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.inference.spectral.simcheck"],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"simulator run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_check()))
