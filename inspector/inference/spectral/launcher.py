"""Public entry point: `radial_profiles` checks the input once and picks a backend.

``backend="auto"`` runs the fused CUDA kernel when numba finds a real CUDA GPU and
the CPU fast path otherwise (also under numba's simulator, which is for tests only).
All backends follow the definition in `reference.py`; tests hold them to it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from inspector.inference.spectral.cpu import radial_profiles_cpu
from inspector.inference.spectral.reference import radial_profiles_reference
from inspector.inference.spectral.spec import (
    SpectralInputError,
    check_frame,
    check_rings,
    check_size,
    resolve_boxes,
)

Backend = Literal["auto", "cpu", "cuda", "reference"]
BACKENDS = ("auto", "cpu", "cuda", "reference")


@lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True only for real CUDA hardware with a working driver (never the simulator)."""
    from numba.core import config

    if config.ENABLE_CUDASIM or config.DISABLE_CUDA:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver or toolkit means "no GPU"
        return False


def pick_backend(backend: Backend = "auto") -> str:
    """The backend `radial_profiles` will run for this request."""
    if backend not in BACKENDS:
        raise SpectralInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "cuda" if cuda_available() else "cpu"
    return backend


def radial_profiles(
    frame: np.ndarray,
    boxes: object = None,
    grid: tuple[int, int] | None = None,
    size: int = 32,
    rings: int | None = None,
    log: bool = True,
    *,
    window: bool = True,
    return_dc: bool = False,
    backend: Backend = "auto",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Radial FFT profiles (N, R) float32 of RoIs of a mono frame.

    `frame` (H, W) uint8/uint16/float32: a NumPy array, or for the CUDA path also a
    device array or a mapped buffer from `cuda_kernel.mapped_frame` (read in place).
    Give `boxes` (N, 4) x, y, w, h or `grid` (window, stride). `size` S is 32 or 64,
    `rings` R defaults to S/2, `log` applies log1p to |F|; `return_dc` also returns
    the window-weighted mean intensities (N,). Definition: `reference.py`.
    """
    name = pick_backend(backend)
    frame = check_frame(frame)
    size = check_size(size)
    rings = check_rings(rings, size)
    bx = resolve_boxes(tuple(frame.shape), boxes, grid)
    if name == "cuda":
        from inspector.inference.spectral.cuda_kernel import radial_profiles_cuda

        prof, dc = radial_profiles_cuda(frame, bx, size, rings, log, window)
    else:
        if not isinstance(frame, np.ndarray):  # a device array on the CPU path: copy it
            from numba import cuda

            frame = check_frame(cuda.as_cuda_array(frame).copy_to_host())
        if name == "cpu":
            prof, dc = radial_profiles_cpu(frame, bx, size, rings, log, window)
        else:
            prof, dc = radial_profiles_reference(
                frame, bx, size=size, rings=rings, log=log, window=window, return_dc=True
            )
    return (prof, dc) if return_dc else prof
