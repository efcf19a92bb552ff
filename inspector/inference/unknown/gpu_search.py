"""Exact nearest-bank-token distances on an NVIDIA GPU, as a numba.cuda kernel.

The GPU path of `bank.NearestNeighbours` (backend `cuda`), chosen automatically when
numba finds a real CUDA device; torch and cupy are not part of the runtime, so the
kernel is written with numba.cuda, like the spectral engine's. One thread per query
token keeps its running minimum; the block loads the bank in tiles into shared memory,
so each bank row is read from global memory once per block, not once per thread.
The bank stays on the device between frames. Under ``NUMBA_ENABLE_CUDASIM=1`` the same
code runs in numba's simulator (tests: `python -m inspector.inference.unknown.gpu_search`).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
from numba import cuda, float32

THREADS = 128
TILE_FLOATS = 8192  # shared memory per block: 32 KiB of bank rows
MAX_DIM = 256


@cuda.jit(cache=False)
def _nearest_kernel(queries, bank, rows_per_tile, out):
    tile = cuda.shared.array(TILE_FLOATS, float32)
    q = cuda.local.array(MAX_DIM, float32)
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    n, d = queries.shape
    m = bank.shape[0]
    if i < n:
        for k in range(d):
            q[k] = queries[i, k]
    best = float32(math.inf)
    for start in range(0, m, rows_per_tile):
        rows = min(rows_per_tile, m - start)
        for t in range(cuda.threadIdx.x, rows * d, cuda.blockDim.x):
            tile[t] = bank[start + t // d, t % d]
        cuda.syncthreads()
        if i < n:
            for r in range(rows):
                s = float32(0.0)
                base = r * d
                for k in range(d):
                    diff = q[k] - tile[base + k]
                    s += diff * diff
                if s < best:
                    best = s
        cuda.syncthreads()
    if i < n:
        out[i] = best


class CudaNearest:
    """Squared distance of each query to its nearest bank row; the bank lives on the GPU."""

    def __init__(self, bank: np.ndarray, threads: int = THREADS) -> None:
        bank = np.ascontiguousarray(bank, np.float32)
        if bank.shape[1] > MAX_DIM:
            raise ValueError(f"cuda search supports at most {MAX_DIM} dims, got {bank.shape[1]}")
        self.dim = bank.shape[1]
        self.threads = threads
        self.rows_per_tile = TILE_FLOATS // self.dim
        self.bank = cuda.to_device(bank)

    def search(self, queries: np.ndarray) -> np.ndarray:
        q = cuda.to_device(np.ascontiguousarray(queries, np.float32))
        out = cuda.device_array(len(queries), np.float32)
        blocks = max(1, -(-len(queries) // self.threads))
        _nearest_kernel[blocks, self.threads](q, self.bank, self.rows_per_tile, out)
        return out.copy_to_host()


def _selfcheck() -> dict:
    """Small exact comparison with NumPy (runs on hardware or in the simulator)."""
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((70, 150)).astype(np.float32)  # 54 rows a tile: 2 tiles
    queries = rng.standard_normal((40, 150)).astype(np.float32)  # 2 blocks, one partial
    got = CudaNearest(bank, threads=32).search(queries)
    ref = ((queries[:, None, :] - bank[None]) ** 2).sum(-1).min(1)
    return {"max_abs_err": float(np.abs(got - ref).max()), "n": len(got)}


if __name__ == "__main__":  # python -m inspector.inference.unknown.gpu_search -> one JSON line
    print(json.dumps(_selfcheck()))
    sys.exit(0)
