#!/usr/bin/env python3
"""Compile the spectral CUDA kernel to PTX for sm_87 (Jetson Orin), sm_86, sm_89 (RTX).

No GPU is needed: numba-cuda's NVVM (pip extra ``numba-cuda[cu13]``) does the work.
Writes ``engines/ptx/radial_s{S}_{dtype}_sm{XY}.ptx`` (generated: git-ignored) and
prints one line per file; exits 1 if a file targets the wrong arch, has no kernel
entry, uses float64 instructions or needs more than 48 KiB of static shared memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inspector.inference.spectral.cuda_kernel import compile_all_ptx  # noqa: E402

SHARED_LIMIT = 48 * 1024  # static shared memory per block without opt-in


def main(argv: list[str] | None = None) -> int:
    """Compile, write, check; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "engines" / "ptx")
    args = parser.parse_args(argv)
    rows = compile_all_ptx(args.out)
    bad = 0
    for row in rows:
        ok = (row["target"] == row["arch"] and row["entries"] == 1
              and row["f64_instructions"] == 0 and row["shared_bytes"] <= SHARED_LIMIT)
        bad += not ok
        path = Path(row["path"])
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{'ok ' if ok else 'BAD'} S={row['size']:<2} {row['dtype']:<7} {row['arch']}"
              f"  .target {row['target']}  PTX {row['ptx_version']}"
              f"  shared {row['shared_bytes']} B  f64 {row['f64_instructions']}  -> {shown}")
    print(f"{len(rows) - bad}/{len(rows)} PTX files ok")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
