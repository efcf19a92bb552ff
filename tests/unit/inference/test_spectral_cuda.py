"""The CUDA kernel: simulated against the reference, compiled to PTX, and run on real GPUs.

* Simulator (always, when numba-cuda is installed): a child process with
  ``NUMBA_ENABLE_CUDASIM=1`` (numba picks the simulator at import time) runs the kernel
  on a few small RoIs; tolerance 1e-5 per ring (profiles sum to 1) and 1e-5 on dc;
  90-degree rotation and circular shift (window off) within 1e-6; flat patch exactly 0.
* PTX (always, when numba-cuda's NVVM is installed): sm_87, sm_86, sm_89 for S = 32 and
  64; the right target, one kernel entry, no float64 instruction, static shared
  memory within 48 KiB, block barriers present.
* Hardware (marked gpu; skipped without a CUDA GPU): a real launch against the
  reference, frames from a mapped host buffer (zero copy) and from device memory.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip extra: gpu)")

from inspector.inference.spectral import (  # noqa: E402
    cuda_available,
    grid_boxes,
    pick_backend,
    radial_profiles,
    radial_profiles_reference,
)
from inspector.inference.spectral.simcheck import DC_TOLERANCE, TOLERANCE, run_in_simulator  # noqa: E402

needs_gpu = pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU on this machine")


def test_kernel_matches_reference_in_simulator() -> None:
    report = run_in_simulator()
    assert len(report["cases"]) >= 6
    for case in report["cases"]:
        assert case["max_abs_err"] <= TOLERANCE, case
        assert case["max_dc_err"] <= DC_TOLERANCE, case
        for total in case["sums"]:
            assert abs(total - 1) < 1e-5 or total == 0, case
    mixed = report["cases"][0]
    assert mixed["sums"][4] == 0  # the box outside the frame is flat
    assert abs(mixed["sums"][5] - 1) < 1e-5  # the nearly flat one is not
    assert report["rot90_max_diff"] <= 1e-6
    assert report["shift_max_diff"] <= 1e-6
    assert report["flat_max"] == 0
    assert report["flat_dc_err"] <= 1e-7


@pytest.fixture(scope="module")
def ptx_rows() -> list[dict]:
    from numba.core import config

    if config.ENABLE_CUDASIM:
        pytest.skip("PTX cannot be compiled while NUMBA_ENABLE_CUDASIM is set")
    from numba.cuda.cudadrv.error import NvvmSupportError

    from inspector.inference.spectral.cuda_kernel import compile_all_ptx

    try:
        return compile_all_ptx(dtypes=("uint8",))
    except NvvmSupportError as exc:  # pragma: no cover - depends on the install
        pytest.skip(f"NVVM missing: pip install 'numba-cuda[cu13]' ({exc})")


def test_ptx_for_orin_and_rtx(ptx_rows: list[dict]) -> None:
    assert {(r["size"], r["arch"]) for r in ptx_rows} == {
        (s, a) for s in (32, 64) for a in ("sm_87", "sm_86", "sm_89")
    }
    for row in ptx_rows:
        assert row["target"] == row["arch"], row
        assert row["entries"] == 1, row
        assert row["f64_instructions"] == 0, row
        assert row["barriers"] >= 4, row
        s = row["size"]
        assert 2 * 4 * s * s <= row["shared_bytes"] <= 48 * 1024, row  # FFT lives in shared


@pytest.mark.gpu
@needs_gpu
def test_auto_backend_is_cuda() -> None:
    assert pick_backend() == "cuda"


def _workload(seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    boxes = np.column_stack([rng.uniform(-20, 640, 300), rng.uniform(-20, 480, 300),
                             rng.uniform(0.5, 150, 300), rng.uniform(0.5, 150, 300)])
    return frame, boxes


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("size", [32, 64])
def test_gpu_matches_reference(size: int) -> None:
    frame, boxes = _workload(size)
    got, dc = radial_profiles(frame, boxes, size=size, backend="cuda", return_dc=True)
    want, want_dc = radial_profiles_reference(frame, boxes, size=size, return_dc=True)
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
    np.testing.assert_allclose(dc, want_dc, atol=DC_TOLERANCE)
    grid = radial_profiles(frame, grid=(32, 16), size=size, backend="cuda")
    np.testing.assert_allclose(
        grid, radial_profiles_reference(frame, grid_boxes(frame.shape, 32, 16), size=size),
        atol=TOLERANCE)


@pytest.mark.gpu
@needs_gpu
def test_gpu_reads_mapped_and_device_frames_in_place() -> None:
    from numba import cuda

    from inspector.inference.spectral.cuda_kernel import mapped_frame

    frame, boxes = _workload(1)
    want = radial_profiles(frame, boxes, backend="cuda")
    mapped = mapped_frame(frame.shape, frame.dtype)
    mapped[...] = frame  # a camera would write here directly
    np.testing.assert_array_equal(radial_profiles(mapped, boxes, backend="cuda"), want)
    on_device = cuda.to_device(frame)
    np.testing.assert_array_equal(radial_profiles(on_device, boxes, backend="cuda"), want)
    # the CPU path accepts the same buffers
    np.testing.assert_allclose(radial_profiles(on_device, boxes, backend="cpu"), want,
                               atol=TOLERANCE)
