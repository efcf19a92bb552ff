"""CLI verb of the unknown-defect branch: `inspector eval-unknown`.

`inspector eval` belongs to the visual-prompt detector (inspector/cli/model.py), so the
unknown-defect evaluation of issue 8 ("eval --mode unknown") is its own verb:

    inspector eval-unknown --data ../shared/data/magtile --out out/eval-unknown

Prints the Markdown table; writes unknown_eval.json, unknown_eval.md and overlay sheets.
With `--compare`, the parameters of before issue 21, today's defaults (or `--params`) and
the same without the coarse scale run side by side in one run, and the table has a row
per step (steps.md, steps.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "magtile"


def _counts(text: str) -> tuple[int | None, ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"--refs: expected counts or 'all', got {part!r}")
    return tuple(out)


def cmd_eval_unknown(args: argparse.Namespace) -> int:
    """Evaluate the unknown-defect branch on a dataset and print the Markdown table."""
    from pydantic import ValidationError

    from inspector.inference.unknown.branch import UnknownParams
    from inspector.inference.unknown.evaluate import evaluate, markdown

    data = Path(args.data)
    if not (data / "annotations_test.json").is_file():
        print(f"{data}: no annotations_test.json (a COCO-layout dataset folder)", file=sys.stderr)
        return 2
    try:
        raw = json.loads(args.params) if args.params else {}
        params = UnknownParams.model_validate(raw)
    except (json.JSONDecodeError, ValidationError) as exc:
        print(f"--params: {exc}", file=sys.stderr)
        return 2
    if args.compare:
        from inspector.inference.unknown.evaluate import (
            BEFORE_ISSUE_21,
            evaluate_steps,
            steps_markdown,
        )

        steps = [("before", UnknownParams.model_validate(BEFORE_ISSUE_21))]
        if params.coarse is not None:  # what the coarse scale adds, on the same run
            steps.append(("now-native-only", params.model_copy(update={"coarse": None})))
        steps.append(("now", params))
        print(steps_markdown(evaluate_steps(data, Path(args.out), steps, args.refs,
                                            args.seed, progress=True)))
        return 0
    result = evaluate(data, Path(args.out), params, args.refs, args.seed, progress=True)
    print(markdown(result))
    return 0


def register(sub) -> None:
    """Add the `eval-unknown` verb to the parser."""
    e = sub.add_parser("eval-unknown", help="unknown-defect evaluation (image/pixel AUROC, "
                       "AUPRO) on a COCO-layout dataset")
    e.add_argument("--data", default=str(DEFAULT_DATA),
                   help="dataset folder (images/, annotations_train.json, annotations_test.json)")
    e.add_argument("--out", default="out/eval-unknown", help="report folder")
    e.add_argument("--refs", type=_counts, default=(16, 64, None),
                   help="normal-reference counts, comma separated (default 16,64,all)")
    e.add_argument("--seed", type=int, default=0, help="seed of the reference draw")
    e.add_argument("--params", default=None,
                   help="unknown-branch params as JSON (recipe unknown.params), e.g. "
                        "'{\"coreset_ratio\": 0.05}'")
    e.add_argument("--compare", action="store_true",
                   help="run the parameters of before issue 21, today's (or --params) and "
                        "today's without the coarse scale side by side in one run")
    e.set_defaults(func=cmd_eval_unknown)
