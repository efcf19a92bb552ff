"""A detector chosen at enrolment, by how well each candidate finds the recipe's own
examples when they are held out.

Why: which detector works depends on the product. On a product the trained prompt heads
saw in training they are far ahead (MagTile with `prompt-v2`: 40.7 box AP50 against the
training-free matcher's 23.3); on a product they never saw, which is every customer's,
they find little (MagTile 0.2, NEU-DET 1.7) and the matcher is the better one (23.3,
12.8), better still when heads trained with made-up products as well (`prompt-v3`)
confirm it (24.2, 13.1); on some products those heads alone are best (AGDD 12.2 against
the matcher's 5.3). The recipe itself can say which case it is: its prompt examples are
labelled defects of this product. So enrolment holds out the images of one example per
class at a time (`folds`), enrols each candidate on the rest, and runs it on the
held-out images: box AP50 there (pycocotools, the examples' boxes as ground truth). The
candidates are in order of preference, and a later one replaces the one kept so far only
when its held-out AP50 is more than `margin` times higher: few examples make a noisy
estimate, and the two mistakes do not cost the same (SelectParams). The one kept is then
enrolled on all the examples and detects as it would alone. Measured in
docs/prompt-matching.md ("Choosing the detector at enrolment").

The held-out images have only their prompt boxes as truth, so a real but unlabelled
defect on them counts against every candidate alike. A class with a single example
image is never held out (a candidate could not know it); with no fold possible the first
candidate is kept and the record says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from tqdm import tqdm

from inspector.core.coco import coco_ap50
from inspector.inference.detectors.base import (
    Detection,
    DetectorParams,
    EncodedDetector,
    PromptExample,
    from_json_bytes,
    json_bytes,
    mono,
)
from inspector.inference.detectors.prompt import CONFIRM_MODEL
from inspector.inference.detectors.registry import (
    NestedDetector,
    detector_class,
    params_model,
)

log = logging.getLogger(__name__)
VERSION = "select/1"


class Candidate(NestedDetector):
    """One detector to try: its kind and its own `params` (checked as that kind's)."""

    kind: Literal["prompt", "match", "consensus"]


def confirmed_match(prompt: dict | None = None, match: dict | None = None) -> Candidate:
    """The matcher ranked by the heads of CONFIRM_MODEL, not adapted
    (detectors/consensus.py); `prompt` and `match` are more params of each member."""
    return Candidate(kind="consensus", params={
        "primary": {"kind": "match", "params": match or {}},
        "support": {"kind": "prompt", "params": {"model": CONFIRM_MODEL, "adapt": "off",
                                                 **(prompt or {})}}})


class SelectParams(DetectorParams):
    """`detector.params` of `detector.kind: select`."""

    # in order of preference: a later candidate replaces the one kept so far only when its
    # held-out AP50 is more than `margin` times higher. The matcher comes first, confirmed
    # by the heads of CONFIRM_MODEL as they are (no adaptation, so choosing costs
    # seconds): on a product the heads never saw, keeping heads alone by mistake costs
    # most of it (MagTile 24 -> 0.2 or 7 box AP50), while keeping the matcher where the
    # heads are better costs about half (40 -> 24). Then the heads of DEFAULT_MODEL, best
    # where they were trained; then those of CONFIRM_MODEL, which transfer better
    # (docs/prompt-matching.md, "Heads that transfer, as the matcher's confirmation")
    candidates: Annotated[list[Candidate], Field(min_length=1, max_length=4)] = Field(
        default_factory=lambda: [confirmed_match(), Candidate(kind="prompt"),
                                 Candidate(kind="prompt", params={"model": CONFIRM_MODEL})])
    margin: Annotated[float, Field(ge=1, le=100)] = 1.5
    folds: Annotated[int, Field(ge=2, le=10)] = 4
    # good parts given to each fold's enrolment (the first ones): the choice compares the
    # candidates, it needs no final calibration, and the matcher's calibration time grows
    # with every good part, per fold
    fold_normals: Annotated[int, Field(ge=0, le=1000)] = 4


def fold_of_images(prompts: list[PromptExample], folds: int) -> dict[int, int]:
    """Fold of each prompt image (keyed by `id(image)`); images left out never leave.

    Per class, its images in prompt order take folds 0, 1, 2, ... (mod `folds`); an image
    holding several classes takes the fold of its first example. An image is left out of
    the folds when holding it out would leave one of its classes without an example.
    """
    by_cls: dict[str, list[int]] = {}
    first: dict[int, int] = {}
    classes_of: dict[int, set[str]] = {}
    for ex in prompts:
        imgs = by_cls.setdefault(ex.cls, [])
        if id(ex.image) not in imgs:
            imgs.append(id(ex.image))
        first.setdefault(id(ex.image), (len(imgs) - 1) % folds)
        classes_of.setdefault(id(ex.image), set()).add(ex.cls)
    out: dict[int, int] = {}
    for f in range(folds):
        held = [i for i, k in first.items() if k == f]
        for i in held:  # keep the image if a class would lose its last example
            left = {c: [j for j in by_cls[c] if j != i and out.get(j) != f]
                    for c in classes_of[i]}
            if all(left.values()):
                out[i] = f
    return out


def held_out_ap(det: EncodedDetector, prompts: list[PromptExample],
                normals: list[np.ndarray], folds: dict[int, int], classes: list[str],
                progress: bool = False, what: str = "candidate") -> float | None:
    """Box AP50 of `det`, enrolled per fold on the other images, on the held-out prompt
    images, pooled over the folds (None when no image is held out)."""
    images, truths, found = [], [], []
    cat = {c: k + 1 for k, c in enumerate(classes)}
    for f in tqdm(sorted(set(folds.values())), f"select: {what}, held-out folds",
                  disable=not progress):
        held = {i for i, k in folds.items() if k == f}
        det.enroll([ex for ex in prompts if id(ex.image) not in held], normals)
        seen: set[int] = set()
        for ex in prompts:
            i = id(ex.image)
            if i not in held:
                continue
            truths.append({"id": len(truths) + 1, "image_id": i, "category_id": cat[ex.cls],
                           "bbox": list(ex.bbox), "area": ex.bbox[2] * ex.bbox[3],
                           "iscrowd": 0})
            if i in seen:
                continue
            seen.add(i)
            h, w = ex.image.shape[:2]
            images.append({"id": i, "width": w, "height": h})
            found += [{"image_id": i, "category_id": cat[d.cls], "bbox": list(d.bbox),
                       "score": float(d.score)}
                      for d in det.detect(mono(ex.image)) if d.cls in cat]
    if not images:
        return None
    gt = {"images": images, "annotations": truths,
          "categories": [{"id": k, "name": c} for c, k in cat.items()]}
    return coco_ap50(gt, found, "bbox")["ap50"]


def label(c: Candidate) -> str:
    """What an operator reads for a candidate: its kind, and which model's heads it runs
    ('prompt-v2 heads', 'match confirmed by prompt-v3'); two candidates of one kind differ
    by their model. Read from the parsed params, so each kind's defaults apply."""
    def name(kind: str, params: dict) -> str:  # a prompt detector by its model's name
        if kind == "prompt":
            return Path(params_model(kind).parse(params).model).name
        return kind

    if c.kind == "consensus":
        p = params_model(c.kind).parse(c.params)
        return f"{p.primary.kind} confirmed by {name(p.support.kind, p.support.params)}"
    return f"{name(c.kind, c.params)} heads" if c.kind == "prompt" else c.kind


def held_out_text(kinds: list[str], scores: list[float | None]) -> str:
    """'match confirmed by prompt-v3 17.6 %, prompt-v2 heads 2.0 %': each candidate's
    held-out box AP50 (n/a: not measured), for logs and reports."""
    return ", ".join(f"{k} " + ("n/a" if a is None else f"{100 * a:.1f} %")
                     for k, a in zip(kinds, scores, strict=False))


def choose(scores: list[float | None], margin: float) -> int:
    """Index of the candidate to keep: the first, unless a later one's held-out AP50 is
    more than `margin` times the one kept so far (None: not measured, never chosen)."""
    kept = 0
    for k, s in enumerate(scores[1:], 1):
        if s is not None and s > margin * (scores[kept] or 0.0):
            kept = k
    return kept


class SelectDetector(EncodedDetector):
    """The candidate that finds the recipe's held-out examples best (module doc)."""

    kind = "select"

    def __init__(self, params: dict | None = None) -> None:
        self.params = SelectParams.parse(params)
        self.candidates = [detector_class(c.kind)(c.params) for c in self.params.candidates]
        self.chosen = 0
        self.selection: dict | None = None  # what enrolment measured (reports show it)

    @property
    def active(self) -> EncodedDetector:
        return self.candidates[self.chosen]

    @property
    def cacheable(self) -> bool:
        return all(c.cacheable for c in self.candidates)

    @property
    def adapt_record(self) -> dict | None:
        """The chosen candidate's adaptation, if it adapted (evaluation reports it)."""
        return getattr(self.active, "adapt_record", None)

    @property
    def last_timing(self) -> dict[str, float]:  # type: ignore[override]
        return self.active.last_timing

    def enroll(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool = False) -> None:
        p = self.params
        classes = list(dict.fromkeys(ex.cls for ex in prompts))
        folds = fold_of_images(prompts, p.folds)
        t0 = time.perf_counter()
        labels = [label(c) for c in p.candidates]
        scores: list[float | None] = [None] * len(labels)
        if folds and len(labels) > 1:
            for k, det in enumerate(self.candidates):
                scores[k] = held_out_ap(det, prompts, normals[: p.fold_normals], folds,
                                        classes, progress, labels[k])
            log.log(logging.INFO if progress else logging.DEBUG,
                    "select: held-out box AP50 %s", held_out_text(labels, scores))
        self.chosen = choose(scores, p.margin)
        self.selection = {
            "chosen": self.chosen, "kind": p.candidates[self.chosen].kind,
            "label": labels[self.chosen], "candidates": labels, "held_out_ap50": scores,
            "held_out_images": len(folds),
            "seconds": round(time.perf_counter() - t0, 2),
            "why": (f"held-out box AP50, a later candidate kept only when {p.margin}x "
                    "higher" if any(s is not None for s in scores)
                    else "no example image could be held out: the first candidate"),
        }
        log.info("select: %s (%s)", labels[self.chosen], self.selection["why"])
        self.active.enroll(prompts, normals, progress=progress)

    def summary(self) -> str:
        """One line for the operator: what was kept and what each candidate scored."""
        labels = [label(c) for c in self.params.candidates]
        rec = self.selection or {}
        aps = held_out_text(labels, rec.get("held_out_ap50", []))
        return (f"{labels[self.chosen]} kept "
                f"(held-out box AP50: {aps or 'not measured'}; {rec.get('why', '')})")

    def encode(self, image: np.ndarray) -> tuple[Any, ...]:
        """Every candidate's encoding: evaluation encodes a test image once, before the
        enrolments that choose (so its encode time is every candidate's); `detect`
        encodes for the chosen one only."""
        return tuple(c.encode(image) for c in self.candidates)

    def detect_tokens(self, encoded: tuple[Any, ...], hw: tuple[int, int]) -> list[Detection]:
        return self.active.detect_tokens(encoded[self.chosen], hw)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.active.detect(image)

    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        state = self.active.enrolled_state()
        if state is None:
            return None
        return {**{f"chosen/{k}": v for k, v in state.items()},
                "select/chosen": np.array([self.chosen]),
                "select/record": json_bytes(self.selection or {})}

    @property
    def provisional(self) -> bool:
        """Any candidate's: a cut-short enrolment may have swayed the choice too."""
        return any(c.provisional for c in self.candidates)

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore enrolled_state(); ValueError when the choice or its state is missing."""
        if "select/chosen" not in state:
            raise ValueError("enrolled state lacks the selected detector (select/chosen)")
        chosen = int(state["select/chosen"][0])
        if not 0 <= chosen < len(self.candidates):
            raise ValueError(f"enrolled state chose candidate {chosen} of "
                             f"{len(self.candidates)}")
        self.chosen = chosen
        self.active.load_enrolled_state(
            {k[len("chosen/"):]: v for k, v in state.items() if k.startswith("chosen/")})
        self.selection = from_json_bytes(state.get("select/record"))

    @property
    def model_sha256(self) -> str:
        """Every candidate's model, this code's version and how the choice is made."""
        p = self.params
        h = hashlib.sha256(f"{VERSION}\0{p.folds}\0{p.margin}\0{p.fold_normals}\0".encode())
        for c in self.candidates:
            h.update(f"{c.model_sha256}\0".encode())
        h.update(json.dumps([c.kind for c in self.params.candidates]).encode())
        return h.hexdigest()


def describe_choice(detector: object) -> str | None:
    """`summary()` of a `select` detector, bare or behind the good-part branch (its
    `inner`); None for any other detector. For the enrol command and the service log."""
    inner = getattr(detector, "inner", detector)
    return inner.summary() if isinstance(inner, SelectDetector) else None
