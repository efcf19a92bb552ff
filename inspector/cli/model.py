"""CLI verbs of the visual-prompt detector: `inspector train | export | eval`.

`train` caches backbone features, trains the heads episodically and exports the ONNX
graphs next to the weights; `export` re-exports a model folder; `eval` runs the
evaluation protocol of docs/DESIGN.md on a COCO-layout dataset. torch is imported only by
`train` and `export`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "engines" / "prompt-v2"
SYNTHETIC_SEED = 20260  # disjoint from the demo recipe (1000, 1001) and eval_synthetic (7)
RANDOMISED_SEED = 31000  # micro-domain j of `--randomised` is seed RANDOMISED_SEED + j


def default_sources(data: Path, synthetic: int = 400, exclude: tuple[str, ...] = (),
                    randomised: int = 0, randomised_images: int = 24):
    """Synthetic parts, `randomised` made-up products (randomised.py) and the train split
    of every dataset folder under `data`."""
    from inspector.training.episodes import Source

    out = [Source("synthetic", "synthetic", n=synthetic, seed=SYNTHETIC_SEED)]
    out += [Source(f"rnd-{j}", "randomised", n=randomised_images, seed=RANDOMISED_SEED + j)
            for j in range(randomised)]
    if data.is_dir():
        for d in sorted(p for p in data.iterdir() if (p / "annotations_train.json").is_file()):
            out.append(Source(d.name, "coco", path=str(d.resolve())))
    return [s for s in out if s.name not in exclude]


def cmd_train(args: argparse.Namespace) -> int:
    """Train the heads, save and export the model, and record the export's parity."""
    import numpy as np

    from inspector.training.episodes import FeatureCache
    from inspector.training.export import export, parity, write_files_manifest
    from inspector.training.prompt_net import NetConfig
    from inspector.training.train import TrainConfig, data_summary, save, train

    data = Path(args.data)
    if not data.is_dir():
        print(f"inspector train: --data {data}: not a folder of datasets", file=sys.stderr)
        return 2
    if args.randomised < 0 or args.randomised_images < 2 or args.randomised_weight <= 0:
        print(f"inspector train: --randomised {args.randomised} must be >= 0, "
              f"--randomised-images {args.randomised_images} >= 2 (a kind needs two images: "
              f"prompt and query), --randomised-weight {args.randomised_weight} > 0",
              file=sys.stderr)
        return 2
    rnd = (args.randomised, args.randomised_images)
    all_sources = default_sources(data, args.synthetic, (), *rnd)
    unknown = set(args.exclude) - {s.name for s in all_sources}
    if unknown:
        print(f"inspector train: --exclude {sorted(unknown)}: no such dataset in {data} "
              f"(have {[s.name for s in all_sources]})", file=sys.stderr)
        return 2
    sources = default_sources(data, args.synthetic, tuple(args.exclude), *rnd)
    out = Path(args.out)
    # the made-up products together are drawn as often as `randomised_weight` datasets
    weights = {s.name: args.randomised_weight / args.randomised
               for s in sources if s.kind == "randomised"}
    cfg = TrainConfig(steps=args.steps, max_minutes=args.minutes, seed=args.seed,
                      size=args.size, threads=args.threads,
                      source_weights={**weights, **{s: 0.0 for s in args.exclude}})
    # one feature cache for all sources; excluded ones are never sampled
    cache = FeatureCache.load_or_build(all_sources, args.size, Path(args.cache))
    net, record = train(cache, cfg, NetConfig(objectness=args.objectness,
                                              head_input=args.head_input,
                                              size_prior=args.size_prior))
    print(json.dumps(record, indent=1))
    save(net, out, record, cfg, data_summary(cache, sources))
    export(net, out, args.size)
    rng = np.random.default_rng(args.seed)
    from inspector.acquisition.synthetic_parts import frame_rng, render_part

    imgs = [render_part(frame_rng(SYNTHETIC_SEED + 1, i), args.size, args.size)[0]
            for i in range(2)]
    imgs.append(rng.integers(0, 256, (args.size, args.size), dtype=np.uint8))
    diff = parity(net, out, imgs)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["export_parity_max_abs"] = diff
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    write_files_manifest(out)
    print(f"wrote {out}: weights.pt, encoder/prompt/head.onnx, manifest.json; parity {diff}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained model folder to ONNX again and rewrite its file manifest."""
    from inspector.training.export import export, write_files_manifest
    from inspector.training.train import load_net

    folder = Path(args.model)
    export(load_net(folder), folder, args.size)
    write_files_manifest(folder)
    print(f"exported {folder}")
    return 0


def _json_object(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _support_model(args: argparse.Namespace) -> Path | None:
    """--support-model; left out with the default --model, the one a recipe's default
    detector confirms with (so that a bare `inspector eval` is the product path), else
    None (the heads of --model: a leave-one-out model must not be confirmed by a model
    that saw the left-out domain)."""
    from inspector.inference.detectors.prompt import CONFIRM_MODEL

    if args.support_model:
        return Path(args.support_model)
    if Path(args.model).resolve() == DEFAULT_MODEL.resolve():
        return DEFAULT_MODEL.parent / Path(CONFIRM_MODEL).name
    return None


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the visual-prompt evaluation and print its report; 2 for a missing or bad input."""
    from inspector.evaluation.run import EvalSettings, run_eval

    s = EvalSettings(data=Path(args.data), model=Path(args.model), shots=args.shots,
                     seeds=list(args.seeds), backend=args.backend, size=args.size,
                     out=Path(args.out) if args.out else None, limit=args.limit,
                     threads=args.threads, normals=args.normals,
                     adapt="on" if args.adapt else "off", adapt_steps=args.adapt_steps,
                     detector=args.detector, params=args.params, confirm=args.confirm,
                     support_model=_support_model(args))
    try:
        report = run_eval(s)
    except (FileNotFoundError, ValueError) as exc:
        print(f"inspector eval: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def register(sub) -> None:
    """Add the `train`, `export` and `eval` verbs to the parser."""
    t = sub.add_parser("train", help="train the visual-prompt detector (needs the train extra)")
    t.add_argument("--data", default=str(DEFAULT_DATA), help="folder of COCO-layout datasets "
                   "(their annotations_train.json only)")
    t.add_argument("--out", default=str(DEFAULT_MODEL), help="model folder to write")
    t.add_argument("--exclude", nargs="*", default=[], help="dataset names to leave out")
    t.add_argument("--synthetic", type=int, default=400, help="synthetic training parts")
    t.add_argument("--steps", type=int, default=4000, help="episodes at most")
    t.add_argument("--minutes", type=float, default=40.0, help="wall-time budget")
    t.add_argument("--randomised", type=int, default=0, metavar="N",
                   help="made-up products to train on as well (domain randomisation)")
    t.add_argument("--randomised-images", type=int, default=24,
                   help="images per made-up product")
    t.add_argument("--randomised-weight", type=float, default=4.0,
                   help="the made-up products together are drawn as often as this many "
                        "datasets")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--size", type=int, default=320, help="input side (multiple of 16)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--objectness", action="store_true",
                   help="learn a class-agnostic defect prior for query selection")
    t.add_argument("--head-input", choices=["tokens", "similarity"], default="tokens",
                   help="what the box/score/mask head sees: token features, or only "
                        "cosine maps (prompt similarity, local and image contrast)")
    t.add_argument("--size-prior", action="store_true",
                   help="scale boxes from the size of each class's prompt examples")
    t.add_argument("--cache", default=str(DEFAULT_MODEL.parent / "cache"),
                   help="backbone feature cache folder (git-ignored)")
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="export a trained model folder to ONNX")
    x.add_argument("--model", default=str(DEFAULT_MODEL))
    x.add_argument("--size", type=int, default=320)
    x.set_defaults(func=cmd_export)

    e = sub.add_parser("eval", help="visual-prompt evaluation on a COCO-layout dataset")
    e.add_argument("--data", required=True, help="dataset folder (images/, annotations_*.json)")
    e.add_argument("--model", default=str(DEFAULT_MODEL))
    e.add_argument("--detector", choices=["prompt", "match", "consensus", "select"],
                   default="select",
                   help="select (the default, as in a recipe that names no kind): "
                        "the matcher confirmed by the heads of --support-model, the "
                        "heads of --model alone or those of --support-model alone, "
                        "whichever finds the held-out examples better, chosen at each "
                        "enrolment "
                        "(detectors/select.py); prompt: the trained heads of --model; "
                        "match: training-free "
                        "template matching (inspector.inference.detectors.match); "
                        "consensus: the matcher confirmed by the heads of --support-model "
                        "(adapted with --adapt; detectors/consensus.py)")
    e.add_argument("--params", type=_json_object, default=None,
                   help='more detector.params as JSON, e.g. \'{"orientations": 8}\'')
    e.add_argument("--shots", type=int, default=4, help="prompt instances per class (<= 4)")
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    e.add_argument("--backend", default="onnxruntime")
    e.add_argument("--size", type=int, default=320)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--limit", type=int, default=None, help="first N test images (smoke runs)")
    e.add_argument("--out", default=None, help="report folder (default: out/eval-<dataset>)")
    e.add_argument("--normals", type=int, default=0,
                   help="defect-free train images given to enrolment as good parts")
    e.add_argument("--support-model", default=None,
                   help="the model whose heads confirm the matcher (consensus, and "
                        "select's first candidate); default: engines/prompt-v3 with the "
                        "default --model, as a recipe's default detector, else --model. "
                        "For a leave-one-out cell name its own leave-one-out model")
    e.add_argument("--confirm", type=float, default=0.0,
                   help="unknown.params.confirm: the good-part branch (on --normals) drops "
                        "class detections where its map stays below this share of its "
                        "threshold (0: off)")
    e.add_argument("--adapt", action="store_true",
                   help="enrol with adaptation to the prompts (needs torch)")
    e.add_argument("--adapt-steps", type=int, default=None,
                   help="adaptation episodes (default: the detector's)")
    e.set_defaults(func=cmd_eval)
