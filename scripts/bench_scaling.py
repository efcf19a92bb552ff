"""Scaling of the whole service (issue 11): 1..4 cameras at 512x512, and one camera at
512, 1024 and 2048 px square.

Each point is one `inspector bench` in a fresh subprocess, so that its RSS figures are
its own; their bench.json files stay under --out/<point>/. Prints one Markdown table.
Frames other than 512 px get the demo recipe rendered at their size
(scripts/make_demo_recipe.py --size, under --out/recipes/, enrolled before the run is
timed), so that the good-part bank matches the frames as it would on a line.
Usage: .venv/bin/python scripts/bench_scaling.py [--seconds 20] [--warmup 5] [--rate HZ]
       [--out bench-scaling] [--cameras 1 2 3 4] [--sizes 512 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_point(out: Path, cameras: int, size: int, args: argparse.Namespace) -> dict:
    folder = out / f"cam{cameras}-{size}"
    cmd = [sys.executable, "-m", "inspector.cli.main", "--log-level", "WARNING", "bench",
           "--cameras", str(cameras), "--size", str(size), "--seconds", str(args.seconds),
           "--warmup", str(args.warmup), "--out", str(folder), "--quiet"]
    if args.rate:
        cmd += ["--rate", str(args.rate)]
    if size != 512:
        cmd += ["--recipe", str(recipe_for(out, size))]
    print(f"-- {cameras} camera(s) at {size}x{size}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((folder / "bench.json").read_text())


def recipe_for(out: Path, size: int) -> Path:
    """The demo recipe rendered for `size` x `size` frames, made and enrolled once."""
    folder = out / "recipes" / f"demo-{size}"
    if not (folder / "recipe.yaml").is_file():
        print(f"-- rendering the demo recipe at {size} px", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_recipe.py"),
                        "--out", str(folder), "--size", str(size)], check=True)
    subprocess.run([sys.executable, "-m", "inspector.cli.main", "--log-level", "WARNING",
                    "recipe", "enroll", str(folder)], check=True)  # a cache hit when done
    return folder


def row(r: dict) -> str:
    c, f = r["config"], r["figures"]
    lat, d = f["latency_ms"], f["dropped"]
    drops = d["queue_full"] + d["shutdown"] + d["no_free_buffer"]

    def p50(key: str, q: str = "p50") -> str:
        st = lat.get(key) or {}
        return f"{st[q]:.1f}" if q in st else "n/a"

    ratio = f["overhead_ratio"]
    return (f"| {c['cameras']} | {c['size']}x{c['size']} | {f['throughput_per_s']:.2f} | "
            f"{p50('total')} | {p50('total', 'p99')} | {p50('wait')} | {p50('infer')} | "
            f"{p50('infer_encode')} | {p50('infer_head')} | {p50('infer_unknown')} | "
            f"{p50('emit')} | {'n/a' if ratio is None else f'{ratio:.2f}'} | "
            f"{f['cpu_pct']['mean']} | {f['rss']['steady_mb']} | {drops} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=None, help="Hz per camera (default free-run)")
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--out", default="bench-scaling")
    args = p.parse_args()
    out = Path(args.out)
    points = [(c, 512) for c in args.cameras] + [(1, s) for s in args.sizes if s != 512
                                                 or 1 not in args.cameras]
    reports = [run_point(out, c, s, args) for c, s in points]
    m = reports[0]["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores; {args.seconds:g} s per point after "
          f"{args.warmup:g} s warm-up; "
          + (f"{args.rate:g} Hz per camera" if args.rate else "free-run") + ".\n")
    print("| cameras | size | parts/s | total p50 ms | total p99 ms | wait p50 | infer p50 | "
          "encoder p50 | head p50 | unknown p50 | emit p50 | e2e/alone | CPU % "
          "| steady RSS MB | drops |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in reports:
        print(row(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
