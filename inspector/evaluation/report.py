"""Evaluation reports: Markdown tables and a PR-curve picture (PNG).

The plot is an inspector.evaluation.plotting line chart: axes, grid, one coloured curve per class
with a legend.
"""

from __future__ import annotations

from pathlib import Path

from inspector.evaluation.errors import OUTCOMES, mean_ranking
from inspector.evaluation.plotting import line_chart
from inspector.inference.detectors.select import held_out_text


def pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal, or n/a."""
    return "n/a" if v is None else f"{100 * v:.1f}"


def capped_adaptations(per_seed: list[dict]) -> list[tuple[int, dict]]:
    """(seed, adaptation record) of the seeds whose adaptation stopped at its time cap."""
    return [(s["seed"], s["adapt"]) for s in per_seed
            if (s.get("adapt") or {}).get("capped_by_time")]


def markdown(result: dict) -> str:
    """The report of one `inspector eval` run (see run.run_eval for the dict)."""
    lines = [f"### {result['dataset']}: {result['model']}, k = {result['shots']} prompts "
             f"per class, seeds {result['seeds']}", ""]
    has_mask = result["mask_ap50_mean"] is not None
    head = "| class | box AP50 |" + (" mask AP50 |" if has_mask else "")
    lines += [head, "|---|---:|" + ("---:|" if has_mask else "")]
    for name in result["classes"]:
        row = f"| {name} | {pct(result['per_class_box_ap50'][name])} |"
        if has_mask:
            row += f" {pct(result['per_class_mask_ap50'][name])} |"
        lines.append(row)
    row = f"| **mean** | **{pct(result['box_ap50_mean'])}** |"
    if has_mask:
        row += f" **{pct(result['mask_ap50_mean'])}** |"
    lines.append(row)
    lines += ["", "| seed | box AP50 |" + (" mask AP50 |" if has_mask else ""),
              "|---:|---:|" + ("---:|" if has_mask else "")]
    for s in result["per_seed"]:
        lines.append(f"| {s['seed']} | {pct(s['box_ap50'])} |"
                     + (f" {pct(s['mask_ap50'])} |" if has_mask else ""))
    errors = result.get("errors")
    if errors:
        lines += ["", "Where the test defects went (boxes, IoU 0.5, summed over seeds): found; "
                  "scored below the best false positive on a clean test image; overlapped "
                  "only by other classes; never localised by any query.", "",
                  "| class | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
        for name, counts in errors.items():
            n = max(sum(counts.values()), 1)
            lines.append(f"| {name} | " + " | ".join(
                f"{counts[k]} ({100 * counts[k] / n:.0f} %)" for k in OUTCOMES) + " |")
    mean = mean_ranking(result["per_seed"])
    if mean:
        lines += ["", f"Ranking (mean over seeds): a true positive outscores a false positive "
                  f"of its class with probability {mean['score_auc']:.2f} (0.50 = chance); "
                  f"{100 * mean['localised']:.0f} % of the defects are boxed at IoU 0.5 by "
                  "some detection of any class."]
    if "enrol_s" in result:
        lines += ["", f"Enrolment (adapt: {result.get('adapt', 'off')}, "
                  f"{result.get('normals', 0)} good part(s)): mean "
                  f"{result['enrol_s']['mean']:.1f} s, max {result['enrol_s']['max']:.1f} s "
                  "per seed."]
    chosen = [(s["seed"], s["selection"]) for s in result["per_seed"] if s.get("selection")]
    if chosen:  # detector kind select: what each seed's enrolment kept, and on what evidence
        lines += ["", "Detector chosen at enrolment (held-out box AP50 of each candidate): "
                  + "; ".join(f"seed {seed}: {sel.get('label', sel['kind'])} ("
                              + held_out_text(sel["candidates"], sel["held_out_ap50"]) + ")"
                              for seed, sel in chosen) + ". The latency below includes every "
                  "candidate's encoding (each test image is encoded once, before the "
                  "choice); a recipe runs only the chosen detector's."]
    capped = capped_adaptations(result["per_seed"])
    if capped:  # a busy machine: fewer steps than the seed's deterministic enrolment
        lines += ["", f"**Adaptation stopped at its time cap in {len(capped)} of "
                  f"{len(result['per_seed'])} seed(s)** ("
                  + ", ".join(f"seed {seed}: {a.get('steps_done')} steps" for seed, a in capped)
                  + "): the machine was too busy to finish; those enrolments are not the "
                  "seeds' reproducible ones, so neither are their figures."]
    lat = result["latency_ms"]
    lines += ["", f"Test images: {result['test_images']} ({result['defect_free_test_images']} "
              f"defect-free); backend {result['backend']}, input {result['size']} px, "
              f"{result['threads']} thread(s).",
              f"Latency per image (encode + head + post-processing): p50 {lat['p50']:.1f} ms, "
              f"p99 {lat['p99']:.1f} ms (encode p50 {lat['encode_p50']:.1f} ms)."]
    return "\n".join(lines)


def pr_plot(curves: dict[str, tuple[list, list]], path: Path, title: str,
            size: tuple[int, int] = (640, 480)) -> Path:
    """Precision-recall curves (recall on x) as a PNG, one per class in name order."""
    return line_chart(dict(sorted(curves.items())), path, title, x_label="recall",
                      y_label="precision", x_range=(0.0, 1.0), y_range=(0.0, 1.0), size=size)
