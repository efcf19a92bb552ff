"""The table of issue 6: MagTile box/mask AP50 and NEU-DET box AP50 for the shipped model
and the model trained without MagTile (open set), plus ONNX Runtime latency.

Runs `inspector eval` (same code) for each model and dataset of ../shared/data with k=4
prompts and seeds 0 1 2, writes each report under out/, and prints one Markdown table.

    .venv/bin/python scripts/eval_prompt_table.py [--models engines/prompt-v1 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.evaluation.report import pct
from inspector.evaluation.run import EvalSettings, run_eval

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", type=Path,
                    default=[REPO / "engines/prompt-v1", REPO / "engines/prompt-v1-no-magtile"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (args.data / "magtile").is_dir():
        raise SystemExit(f"{args.data}: no magtile dataset (../shared/data is needed)")
    import json

    rows = []
    for model in args.models:
        res = {}
        for ds in ("magtile", "neu-det"):
            out = REPO / "out" / f"eval-{ds}-{model.name}"
            run_eval(EvalSettings(data=args.data / ds, model=model, shots=args.shots,
                                  seeds=args.seeds, threads=args.threads, out=out))
            res[ds] = json.loads((out / "report.json").read_text())
        rows.append((model.name, res))
    print(f"\nk = {args.shots} prompts per class from distinct train images, mean over seeds "
          f"{args.seeds}; AP50 in %; latency per test image (ONNX Runtime, CPU, "
          f"{args.threads} threads, encode + head + post-processing).\n")
    print("| model | MagTile box AP50 | MagTile mask AP50 | NEU-DET box AP50 | "
          "latency p50 / p99 (MagTile) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        m, n = r["magtile"], r["neu-det"]
        print(f"| {name} | {pct(m['box_ap50_mean'])} | {pct(m['mask_ap50_mean'])} | "
              f"{pct(n['box_ap50_mean'])} | {m['latency_ms']['p50']:.1f} / "
              f"{m['latency_ms']['p99']:.1f} ms |")
    print("| UniSpector (paper) | 63.3 | 57.7 | - | - |")


if __name__ == "__main__":
    main()
