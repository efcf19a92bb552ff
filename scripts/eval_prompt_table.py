"""The table of issues 6 and 17: MagTile box/mask AP50 and NEU-DET box AP50 per model,
per enrolment (prompts only, or with N defect-free train images as good parts; with or
without adaptation), with the enrolment time and latency, and whether the model saw
each dataset in training (from its manifest): `*` marks a cell where it did not (open
set). The training-free matcher (`inspector eval --detector match`) gets its own rows,
with `--consensus` each model a row of the matcher confirmed by its heads
(`--detector consensus`), and with `--select` a row of what a recipe gets by default: the
heads, or the matcher confirmed by the heads of `--support-models` (default: the same
model), whichever finds the held-out prompt examples better (`--detector select`).

Runs `inspector eval` (same code) for each model, enrolment and dataset of
../shared/data with k=4 prompts and seeds 0 1 2, writes each report under out/, and
prints one Markdown table.

    .venv/bin/python scripts/eval_prompt_table.py [--models engines/prompt-v1 ...]
        [--normals 0 16] [--adapt] [--training-free] [--consensus] [--select]
        [--datasets magtile neu-det]
        [--support-models engines/prompt-v3 ...] [--params JSON] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inspector.evaluation.errors import mean_ranking
from inspector.evaluation.report import capped_adaptations, pct
from inspector.evaluation.run import EvalSettings, run_eval
from inspector.inference.detectors.select import held_out_text

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def trained_on(model: Path) -> set[str]:
    """Dataset names the model's manifest lists as training sources."""
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    return {src["name"] for src in manifest.get("data", {}).get("sources", [])}


def chosen_table(rows: list, datasets: list[str]) -> None:
    """Per `select` cell: the detector each seed's enrolment kept, and the held-out box
    AP50 of each candidate it tried."""
    cells = [(name, normals, ds, r[ds]) for name, normals, r in rows for ds in datasets
             if r[ds] is not None and r[ds]["detector"] == "select"]
    if not cells:
        return
    print("\nChosen at enrolment, per seed (held-out box AP50 of each candidate):\n")
    print("| model | good parts | dataset | " + " | ".join(
        f"seed {p['seed']}" for p in cells[0][3]["per_seed"]) + " |")
    print("|---|---:|---|" + "---|" * len(cells[0][3]["per_seed"]))
    for name, normals, ds, r in cells:
        vals = []
        for p in r["per_seed"]:
            sel = p["selection"]
            vals.append(f"{sel.get('label', sel['kind'])} "
                        f"({held_out_text(sel['candidates'], sel['held_out_ap50'])})")
        print(f"| {name} | {normals} | {ds} | " + " | ".join(vals) + " |")


def ranking_table(rows: list, datasets: list[str]) -> None:
    """Per cell: defects boxed by any detection, and whether scores rank true positives
    above false positives (AUC, 0.50 = chance): says whether a low AP50 is boxes or scores."""
    print("\nWhy the AP50 (mean over seeds): defects boxed at IoU 0.5 by a detection of any "
          "class / chance that a true positive outscores a false positive of its class.\n")
    print("| model | good parts | " + " | ".join(f"{ds} boxed | {ds} score AUC"
                                                 for ds in datasets) + " |")
    print("|---|---:|" + "---:|" * (2 * len(datasets)))
    for name, normals, r in rows:
        vals = []
        for ds in datasets:
            mean = mean_ranking((r[ds] or {}).get("per_seed", []))
            if not mean:
                vals += ["n/a", "n/a"]
                continue
            star = "*" if r[ds]["_open"] else ""
            vals.append(f"{100 * mean['localised']:.0f} %{star}")
            vals.append(f"{mean['score_auc']:.2f}{star}")
        print(f"| {name} | {normals} | " + " | ".join(vals) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", type=Path,
                    default=[REPO / "engines/prompt-v1", REPO / "engines/prompt-v1-no-magtile"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--normals", type=int, nargs="+", default=[0],
                    help="good parts per enrolment, one row each (e.g. 0 16)")
    ap.add_argument("--adapt", action="store_true", help="enrol with adaptation (torch)")
    ap.add_argument("--training-free", action="store_true",
                    help="add rows of the training-free matcher (detector kind match)")
    ap.add_argument("--consensus", action="store_true",
                    help="add, per model, rows of the matcher confirmed by that model's "
                         "heads (detector kind consensus; adapted with --adapt)")
    ap.add_argument("--select", action="store_true",
                    help="add, per model, rows of the recipe default: the matcher confirmed "
                         "by the heads of its --support-models entry, or heads alone, "
                         "chosen on held-out prompt examples (detector kind select)")
    ap.add_argument("--support-models", nargs="*", type=Path, default=[],
                    help="per --models entry, the model whose heads confirm the matcher in "
                         "its consensus and select rows (default: that model; a recipe's "
                         "default pairs engines/prompt-v2 with engines/prompt-v3)")
    ap.add_argument("--datasets", nargs="+", default=["magtile", "neu-det"])
    ap.add_argument("--params", type=json.loads, default=None,
                    help='more detector.params of the models, as JSON, e.g. '
                         '\'{"adapt_threads": 1}\'')
    ap.add_argument("--limit", type=int, default=None, help="first N test images only")
    args = ap.parse_args()
    for ds in args.datasets:
        if not (args.data / ds).is_dir():
            raise SystemExit(f"{args.data}: no {ds} dataset (../shared/data is needed)")
    if args.support_models and len(args.support_models) != len(args.models):
        raise SystemExit("--support-models: one per --models entry")
    support_of = dict(zip(args.models, args.support_models, strict=False))
    rows = []
    runs = [(m, "prompt") for m in args.models] + (
        [(m, "consensus") for m in args.models] if args.consensus else []) + (
        [(m, "select") for m in args.models] if args.select else []) + (
        [(REPO / "engines", "match")] if args.training_free else [])
    for model, kind in runs:
        support = support_of.get(model, model) if kind in ("consensus", "select") else model
        seen = trained_on(model) | trained_on(support) if kind != "match" else set()
        name = {"prompt": model.name, "match": "training-free matcher",
                "select": f"chosen at enrolment: {model.name} or the matcher confirmed by "
                          f"{support.name}"}.get(
            kind, f"matcher confirmed by {support.name}")
        for normals in args.normals:
            res = {}
            for ds in args.datasets:
                # select tries its candidates per fold: adapting in each would take minutes
                adapt = args.adapt and kind not in ("match", "select")
                tag = (f"-n{normals}" if normals else "") + ("-adapt" if adapt else "")
                stem = {"prompt": model.name, "match": "match"}.get(
                    kind, f"{kind}-{model.name}" + (f"+{support.name}" if support != model
                                                    else ""))
                out = REPO / "out" / f"eval-{ds}-{stem}{tag}"
                params = {"prompt": args.params, "match": None, "select": None}.get(
                    kind, {"support": {"params": args.params or {}}})
                try:
                    run_eval(EvalSettings(data=args.data / ds, model=model, shots=args.shots,
                                          seeds=args.seeds, threads=args.threads, out=out,
                                          normals=normals, limit=args.limit,
                                          adapt="on" if adapt else "off", detector=kind,
                                          params=params, support_model=support))
                except ValueError as exc:  # e.g. NEU-DET: no defect-free image to draw
                    print(f"{ds}, {name}, {normals} good parts: not run: {exc}",
                          file=sys.stderr)
                    res[ds] = None
                    continue
                res[ds] = json.loads((out / "report.json").read_text())
                res[ds]["_open"] = ds not in seen
            rows.append((name, normals, res))
    print(f"\nk = {args.shots} prompts per class from distinct train images, mean over seeds "
          f"{args.seeds}; AP50 in %; adaptation {'on' if args.adapt else 'off'}; test images "
          f"{'first ' + str(args.limit) if args.limit else 'all'}; latency per test image "
          f"(ONNX Runtime, CPU, {args.threads} threads, encode + head + post-processing).\n")
    cols = [f"{ds} box AP50" + (f" | {ds} mask AP50" if ds == "magtile" else "")
            for ds in args.datasets]
    print("| model | good parts | " + " | ".join(cols) + " | enrol s (max) | latency p50 |")
    print("|---|---:|" + "---:|" * (sum(c.count("|") + 1 for c in cols) + 2))
    for name, normals, r in rows:
        vals = []
        for ds in args.datasets:
            if r[ds] is None:
                vals += ["n/a"] * (2 if ds == "magtile" else 1)
                continue
            star = "*" if r[ds]["_open"] else ""
            if capped_adaptations(r[ds]["per_seed"]):
                star += "†"
            vals.append(pct(r[ds]["box_ap50_mean"]) + star)
            if ds == "magtile":
                vals.append(pct(r[ds]["mask_ap50_mean"]) + star)
        done = [r[ds] for ds in args.datasets if r[ds] is not None]
        if not done:
            continue
        first = done[0]
        enrol = max(d["enrol_s"]["max"] for d in done)
        print(f"| {name} | {normals} | " + " | ".join(vals) +
              f" | {enrol:.1f} | {first['latency_ms']['p50']:.1f} ms |")
    ranking_table(rows, args.datasets)
    chosen_table(rows, args.datasets)
    if any(r[ds] is None for _, _, r in rows for ds in args.datasets):
        print("\nn/a: not run (the dataset's train split has no defect-free image to draw "
              "good parts from: NEU-DET).")
    print("\n`*`: the model never saw this dataset in training (open set; the training-free "
          "matcher sees none).\n`†`: the adaptation of some seed stopped at its time cap "
          "(a busy machine): not the reproducible enrolment (the report says which).\n"
          "UniSpector (paper), MagTile: 63.3 box / 57.7 mask.")


if __name__ == "__main__":
    main()
