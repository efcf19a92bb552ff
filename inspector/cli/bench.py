"""CLI verb `inspector bench`: the whole service under load, with reproducible figures.

Writes bench.json, bench.md and latency.png into `--out` and prints the Markdown;
`--soak` judges the soak verdict and exits 1 when it fails, so CI can run it.
scripts/bench_scaling.py runs it once per camera count and frame size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print its Markdown; 2 for bad arguments, 1 for a failed soak."""
    from inspector.bench.report import markdown
    from inspector.bench.run import BenchSettings, run_bench
    from inspector.core.assets import demo_recipe

    settings = BenchSettings(
        recipe=Path(args.recipe) if args.recipe else demo_recipe(),
        config=Path(args.config) if args.config else None, camera=args.camera,
        cameras=args.cameras, size=args.size, rate_hz=args.rate,
        seconds=args.seconds if args.seconds is not None else (None if args.parts else 20.0),
        parts=args.parts, warmup_s=args.warmup,
        restart_broker_every_s=args.restart_broker_every,
        distinct=args.distinct or None, broker=args.broker, archive=args.archive,
        alone_frames=args.alone_frames, seed=args.seed, soak=args.soak,
        progress=not args.quiet)
    if args.config and (args.recipe or args.camera != "synthetic"):
        print("inspector bench: --config brings its own cameras and recipe; leave out "
              "--recipe and --camera", file=sys.stderr)
        return 2
    if args.config:
        from inspector.cli.main import load_config_or_report

        if load_config_or_report(args.config) is None:  # every error, file:line
            return 2
    try:
        settings.check()
    except ValueError as exc:
        print(f"inspector bench: {exc}", file=sys.stderr)
        return 2
    report = run_bench(settings, Path(args.out), signals=True)
    print(markdown(report))
    print(f"written: {args.out}/bench.json, bench.md, latency.png", file=sys.stderr)
    soak = report.get("soak")
    return 1 if soak is not None and not soak["pass"] else 0


def register(sub) -> None:
    """Add the `bench` verb and its options to the top-level parser."""
    b = sub.add_parser("bench", help="run the whole service under load and report latency "
                       "to PUBACK, throughput, CPU and memory (JSON, Markdown, PNG)")
    b.add_argument("--recipe", default=None, help="recipe folder (default: recipes/demo)")
    b.add_argument("--config", default=None, help="a station config: bench its cameras, "
                   "calibration and recipe (MQTT, storage and archive are the bench's)")
    b.add_argument("--camera", choices=("synthetic", "genicam"), default="synthetic",
                   help="synthetic parts, or GenICam cameras (default: the simulated "
                   "viky.cti, serials 0..2; --rate sets AcquisitionFrameRate, else they "
                   "run at their own rate)")
    b.add_argument("--cameras", type=int, default=1, help="cameras, 1..8")
    b.add_argument("--size", type=int, default=512, help="square frame size in pixels")
    b.add_argument("--rate", type=float, default=None,
                   help="frames/s per camera (default: free-run, paced by the detector)")
    b.add_argument("--seconds", type=float, default=None,
                   help="measured time after the warm-up (default 20)")
    b.add_argument("--parts", type=int, default=None,
                   help="stop after this many results instead (warm-up included)")
    b.add_argument("--warmup", type=float, default=5.0, help="seconds not measured")
    b.add_argument("--restart-broker-every", type=float, default=None, metavar="S",
                   help="stop and start the local broker every S seconds")
    b.add_argument("--distinct", type=int, default=16,
                   help="parts rendered once per camera and replayed (0: render every frame)")
    b.add_argument("--broker", default="auto",
                   help="auto: a local mosquitto (needed for restarts); or HOST:PORT")
    b.add_argument("--archive", action="store_true",
                   help="archive NG images and overlays as a station does by default")
    b.add_argument("--alone-frames", type=int, default=30,
                   help="frames for the detector-alone timing")
    b.add_argument("--seed", type=int, default=1000, help="seed of camera 0 (camera i: +i)")
    b.add_argument("--out", default="bench-out", help="output folder")
    b.add_argument("--soak", action="store_true", help="judge the soak verdict (RSS growth "
                   "<= 5 %%, no lost result, outbox empty); exit status 1 when it fails")
    b.add_argument("--quiet", action="store_true", help="no progress line")
    b.set_defaults(func=cmd_bench)
