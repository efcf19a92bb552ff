"""Fused CUDA kernel (numba.cuda): flat field + undistortion + ROI crop in one pass.

One thread per output pixel of the ROI: it looks up where that pixel comes from in the
raw frame (the precomputed undistortion maps, indexed at ROI origin + thread), takes
the four raw neighbours, flat-field corrects each (clip(I * a + b), stored as 8-bit
like the CPU path does), interpolates bilinearly and rounds. Out-of-frame neighbours
replicate the border, as cv2.remap with BORDER_REPLICATE. The frame is read where it
lies: a device array or a mapped page-locked host buffer is used in place, a NumPy
array is copied to the device once. Coefficients and maps are uploaded once per camera.

Arithmetic is float32 only (tests check the PTX for float64 instructions). The same
source compiles to PTX for sm_87 / sm_86 / sm_89 without a GPU (`compile_ptx`) and runs
in numba's simulator under NUMBA_ENABLE_CUDASIM=1 (`simcheck`).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numba import cuda, float32, int32, types

BLOCK = (8, 32)  # threads per block (rows, columns): 256, coalesced along rows
ARCHS = ((8, 7), (8, 6), (8, 9))  # Jetson Orin, RTX 30xx, RTX 40xx
FRAME_TYPES = {"uint8": types.uint8, "uint16": types.uint16}


def correct_kernel(src, a, b, mapx, mapy, x0, y0, has_flat, has_map, shift, out):
    """out[i, j] = bilinear sample of the flat-fielded frame at map(y0 + i, x0 + j)."""
    i, j = cuda.grid(2)
    if i >= out.shape[0] or j >= out.shape[1]:
        return
    height = src.shape[0]
    width = src.shape[1]
    if has_map:
        sx = mapx[y0 + i, x0 + j]
        sy = mapy[y0 + i, x0 + j]
    else:
        sx = float32(x0 + j)
        sy = float32(y0 + i)
    c0 = int32(math.floor(sx))
    r0 = int32(math.floor(sy))
    ax = sx - float32(c0)
    ay = sy - float32(r0)
    c1 = min(max(c0 + 1, 0), width - 1)
    r1 = min(max(r0 + 1, 0), height - 1)
    c0 = min(max(c0, 0), width - 1)
    r0 = min(max(r0, 0), height - 1)
    acc = float32(0.0)
    for k in range(4):
        r = r0 if k < 2 else r1
        c = c0 if k % 2 == 0 else c1
        w = (float32(1.0) - ax if k % 2 == 0 else ax) * (float32(1.0) - ay if k < 2 else ay)
        if has_flat:
            v = float32(src[r, c]) * a[r, c] + b[r, c]
            v = float32(math.floor(min(max(v, float32(0.0)), float32(255.0))))
        else:
            v = float32(src[r, c] >> shift)
        acc += w * v
    out[i, j] = np.uint8(min(acc + float32(0.5), float32(255.0)))


@cache
def kernel():
    """The numba.cuda dispatcher of correct_kernel, created once per process."""
    return cuda.jit(correct_kernel)


def signature(frame_dtype: str) -> tuple:
    """The kernel's numba argument types for frames of `frame_dtype` (for compile_ptx)."""
    f32 = types.Array(types.float32, 2, "C")
    return (types.Array(FRAME_TYPES[frame_dtype], 2, "C"), f32, f32, f32, f32, types.int32,
            types.int32, types.int32, types.int32, types.int32,
            types.Array(types.uint8, 2, "C"))


def compile_ptx(frame_dtype: str, cc: tuple[int, int]) -> str:
    """PTX for one frame type and compute capability (no GPU needed)."""
    ptx, _ = cuda.compile_ptx(correct_kernel, signature(frame_dtype), cc=cc)
    return ptx


class DeviceCorrector:
    """Device copies of one camera's coefficients and maps, and the launch."""

    def __init__(self, a: np.ndarray | None, b: np.ndarray | None,
                 mapx: np.ndarray | None, mapy: np.ndarray | None) -> None:
        dummy = np.zeros((1, 1), np.float32)
        self.has_flat = a is not None
        self.has_map = mapx is not None
        self.a = cuda.to_device(a if a is not None else dummy)
        self.b = cuda.to_device(b if b is not None else dummy)
        self.mapx = cuda.to_device(mapx if mapx is not None else dummy)
        self.mapy = cuda.to_device(mapy if mapy is not None else dummy)

    def run(self, frame: object, roi: tuple[int, int, int, int]) -> np.ndarray:
        """Corrected ROI (x, y, w, h of the calibrated frame) as a host uint8 array."""
        x0, y0, w, h = roi
        on_device = hasattr(frame, "__cuda_array_interface__")
        d_src = frame if on_device else cuda.to_device(np.ascontiguousarray(frame))
        shift = 8 if np.dtype(frame.dtype) == np.uint16 else 0
        d_out = cuda.device_array((h, w), np.uint8)
        grid = (math.ceil(h / BLOCK[0]), math.ceil(w / BLOCK[1]))
        kernel()[grid, BLOCK](d_src, self.a, self.b, self.mapx, self.mapy, np.int32(x0),
                              np.int32(y0), np.int32(self.has_flat), np.int32(self.has_map),
                              np.int32(shift), d_out)
        return d_out.copy_to_host()
