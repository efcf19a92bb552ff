"""Benchmark of the unknown-defect branch's search: one 512 x 512 frame vs a big bank.

    .venv/bin/python scripts/bench_unknown.py [--bank 100000] [--repeats 3]

The bank is made of real tokens (features.py, default params) of seeded synthetic good
parts, the queries are the 4096 tokens of one more 512 x 512 part. Every backend of
bank.NearestNeighbours (and scikit-learn's, when installed) runs on the same data in
the same process, interleaved per repeat, so ratios are measured side by side; medians
are reported. Accuracy against the exact search: recall@1 (same nearest distance within
1e-4 relative) and the mean relative distance error. Memory: resident-set growth while
building the index (bank vectors included). Also times the encoder and a whole
`UnknownBranch.detect` on 512 x 512 frames (with and without the coarse scale), and the
greedy coreset. Prints Markdown.

`--memory`: peak resident memory of one frame's tokens and search, per frame size, the
whole frame in one encoder pass against tiles (`features.tile`), each in a fresh process.

`--false-alarms N`: the demo recipe (enrolled as the service enrols it) judges N new
seeded good parts; prints the share rejected, and rejected for an unknown defect, with
their 95 % intervals (Clopper-Pearson).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.acquisition.synthetic_parts import frame_rng, good_part  # noqa: E402
from inspector.inference.unknown.bank import NearestNeighbours, greedy_coreset  # noqa: E402
from inspector.inference.unknown.features import TokenExtractor  # noqa: E402

SEED = 8080


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bank_tokens(n: int, ex: TokenExtractor) -> np.ndarray:
    out, total, i = [], 0, 0
    while total < n:
        g = ex.grid(good_part(frame_rng(SEED, i), 512, 512))
        out.append(g.reshape(-1, g.shape[-1]))
        total += len(out[-1])
        i += 1
    return np.ascontiguousarray(np.concatenate(out)[:n])


class SklearnNN:
    """scikit-learn NearestNeighbors with the same search() as NearestNeighbours."""

    def __init__(self, bank: np.ndarray, algorithm: str) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.nn = NearestNeighbors(n_neighbors=1, algorithm=algorithm).fit(bank)

    def search(self, q: np.ndarray) -> np.ndarray:
        return self.nn.kneighbors(q, return_distance=True)[0][:, 0].astype(np.float32)


class FactoryNN:
    """A faiss `index_factory` index (optionally re-ranked exactly: IndexRefineFlat with
    `k_factor` candidates) with the same search() as NearestNeighbours; for index kinds
    that the product does not offer, measured so that the choice is shown, not assumed."""

    def __init__(self, bank: np.ndarray, spec: str, k_factor: int = 0, **params) -> None:
        import faiss

        self.base = faiss.index_factory(bank.shape[1], spec)
        self.index = self.base
        if k_factor:
            self.index = faiss.IndexRefineFlat(self.base)
            self.index.k_factor = k_factor
        self.index.train(bank)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # graph indexes: insertion order fixes the graph
        try:
            self.index.add(bank)
        finally:
            faiss.omp_set_num_threads(threads)
        for name, value in params.items():
            if name == "search_L":  # NSG's beam: not a ParameterSpace name
                faiss.downcast_index(self.base).nsg.search_L = value
            else:
                faiss.ParameterSpace().set_index_parameter(self.index, name, value)

    def search(self, q: np.ndarray) -> np.ndarray:
        d, _ = self.index.search(np.ascontiguousarray(q, np.float32), 1)
        return np.sqrt(np.maximum(d[:, 0], 0.0))


_MEMORY_CHILD = """
import resource, sys, time
import numpy as np
from inspector.acquisition.synthetic_parts import frame_rng, good_part
from inspector.inference.unknown.bank import NearestNeighbours
from inspector.inference.unknown.features import FeatureParams, TokenExtractor
size, tile = int(sys.argv[1]), (None if sys.argv[2] == "none" else int(sys.argv[2]))
frame = good_part(frame_rng(7, 0), size, size)
ex = TokenExtractor(FeatureParams(tile=tile))
bank = np.random.default_rng(0).normal(size=(20_000, 152)).astype(np.float32)
nn = NearestNeighbours(bank, "faiss")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ms = []
for _ in range(3):
    t0 = time.perf_counter()
    g = ex.grid(frame)
    nn.search(g.reshape(-1, g.shape[-1]))
    ms.append(1000 * (time.perf_counter() - t0))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base / 1024, peak / 1024, sorted(ms)[1])
"""


def memory_table(sizes: tuple[int, ...] = (512, 1024, 2048, 4096)) -> None:
    """Peak RSS per frame size, whole frame vs tiles, each in a fresh process."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    print("\n| frame | encoder | peak RSS MiB | of it, for the frame | tokens + search ms |")
    print("|---|---|---|---|---|")
    for size in sizes:
        for tile in ("none", "768"):
            out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(size), tile],
                                 capture_output=True, text=True, env=env, timeout=900)
            if out.returncode != 0:
                print(f"| {size} | {tile} | failed: {out.stderr.strip()[-200:]} | | |")
                continue
            base, peak, ms = (float(v) for v in out.stdout.split())
            what = "whole frame" if tile == "none" else f"tiles of {tile} px"
            print(f"| {size} x {size} | {what} | {peak:.0f} | {peak - base:.0f} | {ms:.0f} |",
                  flush=True)


def false_alarms(n: int, seed: int = 9090, folder: Path | None = None) -> None:
    """Verdicts of the demo recipe (or a variant of it in `folder`) on `n` new good parts,
    as the service decides them."""
    from tqdm import tqdm

    from inspector.core.assets import demo_recipe
    from inspector.decision.verdict import decide
    from inspector.inference.unknown.calibrate import rate_interval
    from inspector.recipes.cache import detector_for, enroll_cached
    from inspector.recipes.recipe import load_recipe

    recipe = load_recipe(folder or demo_recipe())
    detector = detector_for(recipe)
    enroll_cached(recipe, detector, progress=True)
    ng = unknown = 0
    t0 = time.perf_counter()
    for i in tqdm(range(n), "good parts"):
        img = good_part(frame_rng(seed, i), 512, 512)
        verdict = decide(detector.detect(img), recipe, recipe.mm_per_px)
        if not verdict.ok:
            ng += 1
            unknown += any(r.startswith("unknown:") for r in verdict.reasons)
    ms = 1000 * (time.perf_counter() - t0) / n
    print(f"\nRecipe `{recipe.id}` rev {recipe.rev} ({folder or 'the demo'}), {n} new good "
          f"parts (seed {seed}, "
          f"512 x 512), {ms:.0f} ms per part:\n")
    print("| rejected | parts | rate | 95 % interval |\n|---|---:|---:|---|")
    for what, k in (("any reason", ng), ("an unknown defect", unknown)):
        lo, hi = rate_interval(k, n)
        print(f"| {what} | {k} | {100 * k / n:.2f} % | {100 * lo:.2f}-{100 * hi:.2f} % |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--false-alarms", type=int, default=None, metavar="N",
                    help="only the demo recipe's false-alarm rate on N new good parts")
    ap.add_argument("--recipe", type=Path, default=None,
                    help="with --false-alarms: a variant of the demo recipe (e.g. another "
                         "model) instead of the demo itself")
    ap.add_argument("--seed", type=int, default=9090,
                    help="with --false-alarms: the seed the good parts are drawn from")
    ap.add_argument("--memory", action="store_true",
                    help="only the peak-memory table (whole frame vs tiles)")
    ap.add_argument("--bank", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--coreset-from", type=int, default=40_000,
                    help="tokens for the coreset timing (picks 10 %%)")
    args = ap.parse_args(argv)
    if args.memory:
        memory_table()
        return 0
    if args.false_alarms:
        false_alarms(args.false_alarms, args.seed, folder=args.recipe)
        return 0

    ex = TokenExtractor()
    frame = good_part(frame_rng(SEED + 1, 0), 512, 512)
    g = ex.grid(frame)
    queries = np.ascontiguousarray(g.reshape(-1, g.shape[-1]))
    bank = bank_tokens(args.bank, ex)

    nn = NearestNeighbours
    candidates = [
        ("numpy", "exact, BLAS matmul", lambda: nn(bank, "numpy")),
        ("faiss", "exact, IndexFlatL2", lambda: nn(bank, "faiss")),
        ("faiss pca64", "approx., PCA 64 + flat", lambda: nn(bank, "faiss", pca_dim=64)),
        ("faiss-ivf nprobe=1", "approx., IVFFlat sqrt(N) lists", lambda: nn(bank, "faiss-ivf")),
        ("faiss-ivf nprobe=4", "approx., IVFFlat sqrt(N) lists",
         lambda: nn(bank, "faiss-ivf", nprobe=4)),
        ("faiss-ivf pca64 nprobe=1", "approx., PCA 64 + IVFFlat",
         lambda: nn(bank, "faiss-ivf", pca_dim=64)),
        ("faiss-ivf pca32 nprobe=1", "approx., PCA 32 + IVFFlat",
         lambda: nn(bank, "faiss-ivf", pca_dim=32)),
        ("faiss-ivf nprobe=8", "approx., IVFFlat sqrt(N) lists",
         lambda: nn(bank, "faiss-ivf", nprobe=8)),
        ("faiss-hnsw ef=16", "approx., HNSW32", lambda: nn(bank, "faiss-hnsw", ef_search=16)),
        ("faiss-hnsw ef=16 refine 2 % (the default)", "approx., HNSW32, farthest 2 % again "
         "at ef 256", lambda: nn(bank, "faiss-hnsw", ef_search=16, refine=0.02)),
        ("faiss-hnsw M16 ef=16", "approx., HNSW16",
         lambda: nn(bank, "faiss-hnsw", hnsw_m=16, ef_search=16)),
        ("faiss-hnsw M16 ef=24", "approx., HNSW16",
         lambda: nn(bank, "faiss-hnsw", hnsw_m=16, ef_search=24)),
        ("faiss-hnsw M16 ef=32", "approx., HNSW16",
         lambda: nn(bank, "faiss-hnsw", hnsw_m=16, ef_search=32)),
        ("faiss-hnsw pca32 ef=16", "approx., PCA 32 + HNSW32",
         lambda: nn(bank, "faiss-hnsw", pca_dim=32, ef_search=16)),
    ]
    try:
        import faiss  # noqa: F401

        candidates += [
            ("faiss IVF256 PQ76x4 fast scan + re-rank 16", "approx., 4-bit PQ, exact re-rank",
             lambda: FactoryNN(bank, "IVF256,PQ76x4fs", k_factor=16, nprobe=8)),
            ("faiss HNSW32 fp16 ef=16", "approx., HNSW on float16 vectors",
             lambda: FactoryNN(bank, "HNSW32,SQfp16", efSearch=16)),
            ("faiss NSG32 L=16", "approx., NSG graph",
             lambda: FactoryNN(bank, "NSG32,Flat", search_L=16)),
        ]
    except ImportError:
        pass
    try:
        import sklearn  # noqa: F401

        candidates.append(("sklearn brute", "exact", lambda: SklearnNN(bank, "brute")))
    except ImportError:
        pass
    from inspector.inference.spectral import cuda_available

    built, skipped = [], []
    for name, kind, make in candidates:
        before = rss_mb()
        t0 = time.perf_counter()
        try:
            index = make()
        except (RuntimeError, ImportError) as exc:
            skipped.append(f"{name}: {exc}")
            continue
        built.append((name, kind, index, time.perf_counter() - t0, rss_mb() - before))
    if cuda_available():
        built.append(("cuda", "exact, numba.cuda kernel", NearestNeighbours(bank, "cuda"), 0, 0))
    else:
        skipped.append("cuda: no CUDA GPU on this machine (numba.cuda finds none)")

    exact = built[0][2].search(queries)
    times = {name: [] for name, *_ in built}
    cpu = {name: [] for name, *_ in built}
    results = {}
    for _ in range(args.repeats):  # interleaved: load changes hit every backend alike
        for name, _kind, index, *_ in built:
            t0, c0 = time.perf_counter(), time.process_time()
            d = index.search(queries)
            times[name].append(1000 * (time.perf_counter() - t0))
            cpu[name].append(1000 * (time.process_time() - c0))
            results[name] = d

    machine = platform.processor() or platform.machine()
    print(f"Search per 512 x 512 frame ({len(queries)} query tokens, {queries.shape[1]} dims) "
          f"against a bank of {len(bank):,} tokens ({bank.nbytes / 2**20:.0f} MiB float32); "
          f"{os.cpu_count()} CPU cores ({machine}), load average "
          f"{os.getloadavg()[0]:.1f}; median of {args.repeats}. CPU ms = process CPU time "
          "(all threads), which load from other processes inflates less than wall time.\n")
    print("| backend | kind | search ms / frame (wall) | CPU ms | vs numpy | recall@1 "
          "| mean rel. dist. error | build s | memory MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = float(np.median(times["numpy"]))
    for name, kind, _index, build_s, mem in built:
        med = float(np.median(times[name]))
        d = results[name]
        recall = float(np.mean(np.abs(d - exact) <= 1e-4 * np.maximum(exact, 1e-6) + 1e-4))
        err = float(np.mean(np.abs(d - exact) / np.maximum(exact, 1e-6)))
        print(f"| {name} | {kind} | {med:.1f} | {np.median(cpu[name]):.1f} | {base / med:.2f}x "
              f"| {recall:.3f} | {err:.4f} | {build_s:.1f} | {mem:.0f} |")
    for s in skipped:
        print(f"\nskipped: {s}")

    # the rest of a frame's work, for context (an extractor that shares no grids: a
    # shared one hands the same frame's grid out again instead of encoding it)
    solo = TokenExtractor(share=False)
    t_enc = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        solo.grid(frame)
        t_enc.append(1000 * (time.perf_counter() - t0))
    branch_ms = branch_times(args.repeats)
    src = bank[: args.coreset_from]
    t0 = time.perf_counter()
    greedy_coreset(src, len(src) // 10, proj_dim=64)
    t_core = time.perf_counter() - t0
    print(f"\n| other step | median |\n|---|---|\n| encoder + tokens, 512 x 512 frame (ONNX "
          f"Runtime) | {np.median(t_enc):.1f} ms |\n| greedy coreset, {len(src):,} -> "
          f"{len(src) // 10:,} tokens (proj. 64) | {t_core:.1f} s |")
    for name, ms in branch_ms.items():
        print(f"| UnknownBranch.detect, 512 x 512 frame, 16 good parts, {name} | "
              f"{np.median(ms):.1f} ms |")
    return 0


def branch_times(repeats: int, n_good: int = 16) -> dict[str, list[float]]:
    """ms per `UnknownBranch.detect` of 512 x 512 frames, with the default coarse scale
    and without it, enrolled on the same good parts; frames interleaved between the two."""
    from inspector.inference.unknown.branch import UnknownBranch

    normals = [good_part(frame_rng(SEED + 2, i), 512, 512) for i in range(n_good)]
    branches = {"native + coarse (default)": UnknownBranch(),
                "native only (`coarse: null`)": UnknownBranch({"coarse": None})}
    for b in branches.values():
        b.enroll(normals)
    out: dict[str, list[float]] = {k: [] for k in branches}
    for i in range(max(repeats, 5)):
        frame = good_part(frame_rng(SEED + 3, i), 512, 512)
        for k, (name, b) in enumerate(branches.items()):
            own = frame.copy()
            own[0, 0] ^= k  # not the grid the other branch left for sharing: encode it
            t0 = time.perf_counter()
            b.detect(own)
            out[name].append(1000 * (time.perf_counter() - t0))
    return out


if __name__ == "__main__":
    sys.exit(main())
