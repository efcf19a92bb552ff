"""The fused CUDA correction kernel: simulated, compiled to PTX, and run on real GPUs.

* Simulator (always, when numba-cuda is installed): a child process with
  NUMBA_ENABLE_CUDASIM=1 runs the kernel on small frames covering flat field on/off,
  undistortion on/off, 8/16-bit frames, an ROI off the origin and maps leaving the
  frame; it must match the float64 reference within 1 grey level and the CPU path
  (numba flat field + cv2.remap) within 1 grey level.
* PTX (always, when numba-cuda's NVVM is installed): sm_87, sm_86, sm_89 for 8- and
  16-bit frames: the right target, one kernel entry, no float64 instruction.
* Hardware (marked gpu; skipped without a CUDA GPU): a real launch against the CPU path.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip extra: gpu)")

from inspector.calibration.flatfield import FlatField  # noqa: E402
from inspector.preprocess.corrector import Corrector, gpu_available  # noqa: E402
from inspector.preprocess.simcheck import (  # noqa: E402
    CPU_TOLERANCE,
    TOLERANCE,
    run_in_simulator,
)

# Mean difference kernel vs CPU path. OpenCV 4.x's remap rounds float map coordinates to
# 1/32 px (fixed-point tables), 5.x interpolates at the float position as the kernel does:
# measured up to 0.104 grey levels on average under 4.12, 0 (identical) under 5.1.
MEAN_CPU = 0.05 if int(cv2.__version__.split(".")[0]) >= 5 else 0.15


def test_kernel_matches_reference_and_cpu_path_in_simulator() -> None:
    report = run_in_simulator()
    assert len(report["cases"]) == 4
    for case in report["cases"]:
        assert case["same_offset"], case
        assert case["max_err_reference"] <= TOLERANCE, case
        assert case["max_err_cpu"] <= CPU_TOLERANCE, case
        assert case["mean_err_cpu"] < MEAN_CPU, case


def test_ptx_for_orin_and_rtx() -> None:
    from numba.core import config

    if config.ENABLE_CUDASIM:
        pytest.skip("PTX cannot be compiled while NUMBA_ENABLE_CUDASIM is set")
    from numba.cuda.cudadrv.error import NvvmSupportError

    from inspector.preprocess.cuda_kernel import ARCHS, FRAME_TYPES, compile_ptx

    for dtype in FRAME_TYPES:
        for cc in ARCHS:
            try:
                ptx = compile_ptx(dtype, cc)
            except NvvmSupportError as exc:  # pragma: no cover - depends on the install
                pytest.skip(f"NVVM missing: pip install 'numba-cuda[cu13]' ({exc})")
            assert re.search(rf"^\.target\s+sm_{cc[0]}{cc[1]}\b", ptx, re.M)
            assert len(re.findall(r"^\.visible\s+\.entry\b", ptx, re.M)) == 1
            assert not re.findall(r"^\s+[a-z][\w.]*\.f64\b", ptx, re.M), (dtype, cc)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU on this machine")
def test_gpu_matches_cpu_on_hardware() -> None:  # pragma: no cover - needs a GPU
    import cv2

    rng = np.random.default_rng(0)
    h, w = 1024, 1280
    frame = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2.0)
    K = np.array([[1100.0, 0, 640], [0, 1100.0, 512], [0, 0, 1]])
    lens = (K, np.array([-0.2, 0.05, 0.0, 0.0, 0.0]))
    flat = FlatField.from_maps(np.full((h, w), 4, np.float32),
                               (1 + 0.3 * rng.random((h, w))).astype(np.float32), np.uint8)
    gpu = Corrector((w, h), flat, lens, backend="cuda")
    cpu = Corrector((w, h), flat, lens, backend="cpu")
    roi = (100, 50, 1000, 900)
    a, b = gpu(frame, roi).image, cpu(frame, roi).image
    assert np.abs(a.astype(int) - b).max() <= CPU_TOLERANCE
