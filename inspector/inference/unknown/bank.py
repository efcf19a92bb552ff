"""The normal bank: good-part tokens, reduced by a greedy coreset, searched by distance.

Coreset (PatchCore's greedy k-center): pick the token farthest from everything picked
so far, until `n` are picked; every token of the full set is then within the coreset's
covering radius of a kept one, which a random subset does not guarantee (rare good
texture is what a random subset loses first, and what would become a false alarm).
Distances for the selection are taken after a Gaussian random projection (Johnson-
Lindenstrauss) to `proj_dim` dimensions; the selection loop is a fused numba kernel
(written here because neither NumPy nor faiss has a k-center step: NumPy would need
three passes over the data per pick). Large sets are reduced per image first and then
globally; the covering radius of the result is at most the sum of the two radii.

Search: `NearestNeighbours(bank, backend)` returns the Euclidean distance of each query
token to its nearest bank token. Backends, measured side by side by
scripts/bench_unknown.py: `numpy` (exact, BLAS matmul, the reference), `faiss` (exact,
IndexFlatL2), `faiss-ivf` and `faiss-hnsw` (approximate), `cuda` (exact, numba.cuda
kernel, only on NVIDIA hardware). `auto` picks `cuda` when a GPU is present, else faiss
(HNSW for banks of AUTO_APPROX_FROM tokens or more, exact below), else numpy. Measured on
a 100k-token bank and a 512 x 512 frame (BENCHMARKS.md): HNSW (M 32, efSearch 16) takes
the time of IVF with 4 of sqrt(N) lists (42.6 vs 45.0 ms) at recall@1 0.956 instead of
0.905; nothing measured on this 2-core CPU reaches 10 ms at 0.95. The HNSW graph is
built on one thread, so that the same bank gives the same graph on any machine. An
approximate search only ever overestimates a distance; since calibration uses the same
search as detection, the calibrated false-alarm rate holds for it.

Recall@1 over all tokens hides where HNSW errs: at the tokens far from every bank token,
which are the ones that score a part. On BSData's real bank (61 560 tokens, 60 test
images) HNSW at efSearch 16 found 0.969 of all nearest neighbours, yet overestimated the
largest distance of every one of the 60 images by more than 5 %, and the branch flagged
9.9 % of BSData's good test parts. So `refine` (default 2 %) searches the share of each
call's queries with the largest distances again, with `refine_ef` (256) candidates: 2 of
60 images then stay off by more than 5 %, for 28 % more search time (BENCHMARKS.md).
Only HNSW refines; the exact backends need not, IVF and PCA projections do not.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit
from tqdm import tqdm

Backend = Literal["auto", "numpy", "faiss", "faiss-ivf", "faiss-hnsw", "cuda"]
BACKENDS = ("auto", "numpy", "faiss", "faiss-ivf", "faiss-hnsw", "cuda")
AUTO_APPROX_FROM = 4096  # `auto` search: banks of this many tokens or more use faiss-hnsw


# --- coreset -------------------------------------------------------------------------
@njit(fastmath=True, cache=True)
def _kcenter_steps(z: np.ndarray, mind: np.ndarray, picked: np.ndarray, k0: int, k1: int
                   ) -> None:
    """Greedy k-center picks k0..k1-1: update each row's distance to the last pick and
    take the farthest row, fused in one pass over `z` per pick.

    Serial on purpose: one parallel region per pick costs more in barriers than it
    saves on a shared 2-core line PC (measured: 5x slower under load).
    """
    n, d = z.shape
    for k in range(k0, k1):
        c = z[picked[k - 1]]
        best = np.float32(-1.0)
        arg = 0
        for i in range(n):
            s = np.float32(0.0)
            for j in range(d):
                t = z[i, j] - c[j]
                s += t * t
            if s < mind[i]:
                mind[i] = s
            if mind[i] > best:
                best = mind[i]
                arg = i
        picked[k] = arg


def random_projection(dim_in: int, dim_out: int, seed: int = 0) -> np.ndarray:
    """(dim_in, dim_out) Gaussian matrix that keeps distances in expectation."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_out)).astype(np.float32)


def greedy_coreset(
    x: np.ndarray, n: int, proj_dim: int | None = 128, seed: int = 0, progress: bool = False
) -> np.ndarray:
    """Indices of `n` rows of `x` chosen by greedy k-center (farthest-point) selection.

    The first pick is a seeded random row; ties and the projection are seeded, so equal
    inputs give equal coresets.
    """
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"coreset input must be (N, D), got shape {x.shape}")
    total = len(x)
    if n >= total:
        return np.arange(total)
    if n < 1:
        raise ValueError(f"coreset size must be >= 1, got {n}")
    z = x
    if proj_dim is not None and proj_dim < x.shape[1]:
        z = np.ascontiguousarray(x @ random_projection(x.shape[1], proj_dim, seed))
    rng = np.random.default_rng(seed)
    picked = np.empty(n, np.int64)
    picked[0] = int(rng.integers(total))
    mind = np.full(total, np.inf, np.float32)
    step = 256
    with tqdm(total=n, desc="coreset", disable=not progress, mininterval=1.0) as bar:
        bar.update(1)
        for k0 in range(1, n, step):
            k1 = min(n, k0 + step)
            _kcenter_steps(z, mind, picked, k0, k1)
            bar.update(k1 - k0)
    return picked


def coverage_radius(x: np.ndarray, kept: np.ndarray, chunk: int = 4096) -> float:
    """Largest distance from any row of `x` to its nearest row of `kept` (exact)."""
    nn = NearestNeighbours(kept, "numpy")
    return float(max(nn.search(x[i:i + chunk]).max() for i in range(0, len(x), chunk)))


# --- nearest-neighbour search -------------------------------------------------------------
def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class NearestNeighbours:
    """Distance from each query row to its nearest bank row (Euclidean, float32)."""

    def __init__(self, bank: np.ndarray, backend: Backend = "auto", *, nprobe: int = 1,
                 nlist: int | None = None, pca_dim: int | None = None, hnsw_m: int = 32,
                 ef_search: int = 16, threads: int | None = None, refine: float = 0.0,
                 refine_ef: int = 256) -> None:
        """`nprobe`, `nlist` (default sqrt(N)): faiss-ivf; `pca_dim`: faiss backends search
        a PCA projection of that many dims (approximate); `hnsw_m`, `ef_search`: HNSW;
        `refine`, `refine_ef`: HNSW searches that share of each call's queries, those with
        the largest distances, again with `refine_ef` candidates."""
        if not 0 <= refine <= 1:
            raise ValueError(f"refine must be a share in [0, 1], got {refine}")
        self.refine = float(refine)
        self._refine_params = None  # HNSW's wider beam for the farthest queries, set once
        if backend not in BACKENDS:
            raise ValueError(f"search backend must be one of {BACKENDS}, got {backend!r}")
        self.bank = np.ascontiguousarray(bank, np.float32)
        if self.bank.ndim != 2 or len(self.bank) == 0:
            raise ValueError(f"bank must be a non-empty (N, D) array, got {self.bank.shape}")
        if backend == "auto":
            from inspector.inference.spectral import cuda_available

            if cuda_available():
                backend = "cuda"
            elif _faiss() is None:
                backend = "numpy"
            else:  # measured (scripts/bench_unknown.py): see the module docstring
                backend = "faiss-hnsw" if len(self.bank) >= AUTO_APPROX_FROM else "faiss"
        self.backend = backend
        self._bank_sq = np.einsum("ij,ij->i", self.bank, self.bank)
        self._index = None
        self._keep: list = []  # faiss sub-indexes referenced by the index
        if backend.startswith("faiss"):
            faiss = _faiss()
            if faiss is None:
                raise RuntimeError(f"search backend {backend!r} needs faiss-cpu "
                                   "(pip install faiss-cpu)")
            if threads:
                faiss.omp_set_num_threads(threads)
            self._index = self._faiss_index(faiss, nprobe, nlist, pca_dim, hnsw_m, ef_search)
            if refine > 0 and backend == "faiss-hnsw" and pca_dim is None:
                self._refine_params = faiss.SearchParametersHNSW()
                self._refine_params.efSearch = int(refine_ef)
        elif backend == "cuda":
            from inspector.inference.unknown.gpu_search import CudaNearest

            self._index = CudaNearest(self.bank)

    def _faiss_index(self, faiss, nprobe: int, nlist: int | None, pca_dim: int | None,
                     hnsw_m: int, ef_search: int):
        d = self.bank.shape[1]
        dim = d if pca_dim is None or pca_dim >= d else pca_dim
        if self.backend == "faiss":
            index = faiss.IndexFlatL2(dim)
        elif self.backend == "faiss-hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m)
            index.hnsw.efConstruction = 64
            index.hnsw.efSearch = ef_search
        else:
            n = nlist or int(np.sqrt(len(self.bank)))
            n = int(max(1, min(n, len(self.bank) // 39)))  # faiss wants >= 39 points a list
            quant = faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quant, dim, n)
            index.nprobe = min(nprobe, n)
            self._keep.append(quant)
        if dim != d:
            self._keep.append(index)
            index = faiss.IndexPreTransform(faiss.PCAMatrix(d, dim), index)
        if not index.is_trained:
            index.train(self.bank)
        if self.backend == "faiss-hnsw":  # one thread: insertion order fixes the graph
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                index.add(self.bank)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            index.add(self.bank)
        return index

    def __len__(self) -> int:
        return len(self.bank)

    def search(self, queries: np.ndarray, chunk: int = 2048) -> np.ndarray:
        q = np.ascontiguousarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != self.bank.shape[1]:
            raise ValueError(f"queries must be (n, {self.bank.shape[1]}), got {q.shape}")
        if self.backend == "numpy":
            out = np.empty(len(q), np.float32)
            for i in range(0, len(q), chunk):
                b = q[i:i + chunk]
                d2 = self._bank_sq[None, :] - 2.0 * (b @ self.bank.T)
                out[i:i + chunk] = d2.min(1) + np.einsum("ij,ij->i", b, b)
        elif self.backend == "cuda":
            out = self._index.search(q)
        else:
            out, _ = self._index.search(q, 1)
            out = out[:, 0]
            if self._refine_params is not None and len(out):
                self._refine(q, out)
        return np.sqrt(np.maximum(out, 0.0))

    def _refine(self, q: np.ndarray, d2: np.ndarray) -> None:
        """Search the `refine` share of queries with the largest squared distances `d2`
        again with the wider beam, in place (an approximate distance is never too small,
        so the farthest tokens are where the beam missed, and where a part is scored)."""
        k = int(np.ceil(self.refine * len(d2)))
        top = np.argpartition(-d2, k - 1)[:k]
        again, _ = self._index.search(np.ascontiguousarray(q[top]), 1,
                                      params=self._refine_params)
        d2[top] = np.minimum(d2[top], again[:, 0])

    @property
    def nbytes(self) -> int:
        """Bank memory (vectors; the index structures of approximate backends add more)."""
        return int(self.bank.nbytes)
