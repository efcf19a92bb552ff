"""The training-free prompt matcher (kind "match"): for products no model has seen.

Why it exists: the trained prompt heads (kind "prompt") localise defects on the domains
they were trained on, but on a new product they find almost none (MagTile, model never
trained on it: box AP50 0.2). What carries over to any product without training is what
the operator showed: each prompt example's crop is a template, and normalised
cross-correlation (TM_CCOEFF_NORMED, the map of `cv2.matchTemplate`) finds where the frame
looks like it, at the example's own size (and the `scales` given) and to the pixel, which stride-8
tokens cannot do for a 13 px blowhole.

A detection is a local maximum of one template variant's correlation map. Calibration
(`calibrate`, on by default) scores it against the highest correlation the same variant
reaches on defect-free surface (the prompt images away from their boxes, and the good
parts): that level maps to 0.5, so a template that matches the good texture everywhere
must beat it to score high. The box is the template's, the mask the example's mask
carried over; per class, boxes are suppressed by NMS.

The class check (`class_power` > 0, on by default) then weighs each box's score by how
much more its frozen ImageNet tokens resemble its own class's prompt regions than the
other classes' (region_class.py): grey-level correlation confuses classes whose textures
are alike.

An optional second cue (`anomaly_power` > 0) multiplies the score by the distance of the
frame's tokens (the unknown branch's frozen ImageNet Lite0 encoder) to the defect-free
tokens of the recipe. It is off by default because it measured worse (MagTile 12.9 box
AP50 with it, 19.9 without; docs/prompt-matching.md). No torch and no trained weights.
The correlation itself is ncc.py's: the frame's spectrum once, each template's product
with it, large templates at half or quarter resolution (`coarse_side`).

Every image (prompt image, good part, frame) whose longer side exceeds `max_side` is
matched shrunk to it, and its detections are mapped back: a correlation costs with the
frame's pixels times the template variants: a 2048 x 2048 frame took 1.6 s at full size,
0.24 s shrunk (confirmed by the heads; BENCHMARKS.md). The factor depends on the image
alone (a camera's frames and its prompt images share a size, so they shrink alike), which
keeps `encode` independent of the enrolment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field
from tqdm import tqdm

from inspector.core.workers import pool
from inspector.inference.detectors.base import (
    Detection,
    DetectorParams,
    EncodedDetector,
    PromptExample,
    mono,
)
from inspector.inference.detectors.ncc import FrameCorrelator, SpectrumCache
from inspector.inference.detectors.prompt import nms
from inspector.inference.detectors.region_class import RegionClasses
from inspector.inference.unknown.anomaly import anomaly_map, to_score
from inspector.inference.unknown.bank import NearestNeighbours, greedy_coreset
from inspector.inference.unknown.features import FeatureParams, TokenExtractor, token_spans

VERSION = "match/4"  # 3: FFT correlation, coarse levels, class check; 4: max_side


class MatchParams(DetectorParams):
    """`detector.params` of a recipe with `detector.kind: match` (all optional)."""

    features: FeatureParams = Field(default_factory=FeatureParams)
    min_ncc: Annotated[float, Field(ge=-1, lt=1)] = 0.2  # correlation a peak needs
    ncc_power: Annotated[float, Field(gt=0, le=8)] = 1.0
    anomaly_power: Annotated[float, Field(ge=0, le=8)] = 0.0  # 0: correlation alone
    calibrate: bool = True  # correlation relative to the template's best on good surface
    margin_px: Annotated[int, Field(ge=0, le=256)] = 4  # around prompt boxes, not "good"
    orientations: Literal[1, 2, 4, 8] = 1  # template variants: +flip, +rot180, all 8
    scales: list[Annotated[float, Field(gt=0.2, le=5)]] = Field(
        default_factory=lambda: [0.75, 1.0, 1.33], min_length=1)
    peaks_per_template: Annotated[int, Field(ge=1, le=200)] = 20
    max_per_class: Annotated[int, Field(ge=1, le=500)] = 50
    nms_iou: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.0
    margin_tokens: Annotated[int, Field(ge=0, le=8)] = 1  # around prompt boxes, not "good"
    max_bank: Annotated[int, Field(ge=64)] = 4096  # defect-free tokens kept (k-center)
    blur_sigma: Annotated[float, Field(ge=0)] = 4.0
    ref_quantile: Annotated[float, Field(gt=0.5, lt=1)] = 0.99
    max_template_side: Annotated[int, Field(ge=8, le=4096)] = 512
    seed: int = 0
    threads: Annotated[int, Field(ge=1, le=64)] = 2  # variants correlated side by side
    # A template whose shorter side is at least twice this is correlated with the frame at
    # half resolution (at least four times: a quarter), the cost of a correlation falling
    # with the pixels of the frame; 0 correlates everything at full resolution.
    coarse_side: Annotated[int, Field(ge=0, le=256)] = 12
    # The score keeps p^class_power, p: how much more the box's frozen tokens look like
    # its class's prompt regions than the other classes' (region_class.py); 0: off.
    class_power: Annotated[float, Field(ge=0, le=4)] = 0.5
    class_tau: Annotated[float, Field(gt=0, le=1)] = 0.05
    # longer side (px) at which images are matched; larger ones are shrunk to it (None:
    # native size). 640: the largest frames measured (docs/prompt-matching.md) keep theirs.
    max_side: Annotated[int, Field(ge=64, le=8192)] | None = 640


MAX_LEVEL = 2  # the coarsest correlation is at a quarter of the frame's resolution


def working_size(img: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """The image shrunk so that its longer side is at most `max_side` (area averaging),
    and the factor applied (1.0: unchanged)."""
    if max_side is None or max(img.shape[:2]) <= max_side:
        return img, 1.0
    f = max_side / max(img.shape[:2])
    h, w = (max(3, round(n * f)) for n in img.shape[:2])
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), f


def shrink_example(img: np.ndarray, ex: PromptExample, f: float
                   ) -> tuple[tuple[float, ...], np.ndarray | None]:
    """The example's box and mask in its image shrunk by `f` (`img`: that image)."""
    if f == 1.0:
        return ex.bbox, ex.mask
    box = tuple(v * f for v in ex.bbox)
    if ex.mask is None or ex.mask.shape[:2] != ex.image.shape[:2]:
        return box, None  # a mask not of its image: the box serves, as unshrunk
    mask = cv2.resize(ex.mask.astype(np.float32), (img.shape[1], img.shape[0]),
                      interpolation=cv2.INTER_AREA) > 0  # any share: thin cracks stay
    return box, mask


def grow(d: Detection, f: float, hw: tuple[int, int]) -> Detection:
    """A detection of the shrunk frame (factor `f`) in the pixels of the frame itself."""
    if f == 1.0:
        return d
    x, y, w, h = (v / f for v in d.bbox)
    w, h = min(w, hw[1] - x), min(h, hw[0] - y)
    mask = d.mask
    if mask is not None:
        size = (max(1, int(round(w))), max(1, int(round(h))))
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return replace(d, bbox=(x, y, w, h), mask=mask,
                   area_px=float(mask.sum()) if mask is not None else w * h)


def pyramid(frame: np.ndarray, levels: int) -> list[np.ndarray]:
    """The frame halved `levels` times (2 x 2 means, odd last rows and columns dropped, so
    that pixel (x, y) of level l covers pixels 2^l x, 2^l y of the frame)."""
    out = [frame]
    for _ in range(levels):
        f = out[-1]
        h, w = f.shape[0] // 2, f.shape[1] // 2
        if min(h, w) < 3:
            break
        out.append(cv2.resize(f[:2 * h, :2 * w], (w, h), interpolation=cv2.INTER_AREA))
    return out


def coarse_level(shape: tuple[int, int], coarse_side: int) -> int:
    """Pyramid level at which a template of this shape is correlated: the coarsest at
    which its shorter side keeps `coarse_side` pixels (0: full resolution)."""
    if coarse_side <= 0:
        return 0
    level = 0
    while level < MAX_LEVEL and min(shape) >> (level + 1) >= coarse_side:
        level += 1
    return level


def box_tokens(shape: tuple[int, int], boxes: list[tuple[float, ...]], margin: int
               ) -> np.ndarray:
    """Bool (h, w) token grid: tokens that overlap any box grown by `margin` tokens."""
    m = np.zeros(shape, bool)
    if boxes:
        x0, y0, x1, y1 = token_spans(np.array(boxes, np.float64), margin)
        for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
            m[max(0, b):max(0, d), max(0, a):max(0, c)] = True
    return m


class MatchDetector(EncodedDetector):
    """The training-free matcher: prompt crops as templates, scored against good surface."""

    kind = "match"
    cacheable = True  # enrolled_state / load_enrolled_state

    def __init__(self, params: dict | None = None) -> None:
        self.params = MatchParams.parse(params)
        self.extractor = TokenExtractor(self.params.features)
        self.classes: list[str] = []
        self.templates: list[np.ndarray] = []  # float32 grey crops
        self.template_masks: list[np.ndarray] = []  # bool: the example's mask (or its box)
        self.template_classes: list[str] = []
        self.template_ids: list[str] = []
        self.bank = np.zeros((0, self.params.features.dim), np.float32)
        self.ref = 1.0
        self._nn: NearestNeighbours | None = None
        self.last_timing: dict[str, float] = {}
        self.background = np.zeros(0, np.float32)  # per template variant (calibrate)
        self._variants: list[tuple[np.ndarray, np.ndarray, str, str]] = []
        self._ladders: list[list[np.ndarray]] = []  # per variant: the template halved
        self._spectra = SpectrumCache()
        self.region = RegionClasses(self.params.class_tau)

    # -- enrolment ---------------------------------------------------------------
    def enroll(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool = False) -> None:
        p = self.params
        templates, masks, t_cls, t_ids = [], [], [], []
        good: list[np.ndarray] = []  # per image: its defect-free tokens
        surfaces: list[tuple[np.ndarray, list]] = []  # (image, prompt boxes) for calibration
        by_image: dict[int, list[PromptExample]] = {}
        for ex in prompts:
            by_image.setdefault(id(ex.image), []).append(ex)
        regions: list[tuple[np.ndarray, float, tuple[float, ...], str]] = []
        for group in tqdm(by_image.values(), "match: prompt images", disable=not progress):
            img, f_img = working_size(mono(group[0].image), p.max_side)
            group = [replace(ex, image=img, bbox=box, mask=mask) for ex in group
                     for box, mask in [shrink_example(img, ex, f_img)]]
            boxes = [ex.bbox for ex in group]
            surfaces.append((img, boxes))
            if p.anomaly_power > 0 or p.class_power > 0:
                grid = self.extractor.grid(img)
                f = self.extractor.scale(img.shape)
                regions += [(grid, f, ex.bbox, ex.cls) for ex in group]
            if p.anomaly_power > 0:  # the token cue: this image's tokens off the boxes
                scaled = [tuple(v * f for v in b) for b in boxes]
                good.append(grid[~box_tokens(grid.shape[:2], scaled, p.margin_tokens)])
            for ex in group:
                crop = self._crop(img, ex.bbox, ex.mask)
                if crop is None:
                    continue
                templates.append(crop[0])
                masks.append(crop[1])
                t_cls.append(ex.cls)
                t_ids.append(ex.prompt_id)
        for im in tqdm(normals, "match: good parts", disable=not progress):
            im = working_size(mono(im), p.max_side)[0]
            surfaces.append((im, []))
            if p.anomaly_power > 0:
                g = self.extractor.grid(im)
                good.append(g.reshape(-1, g.shape[-1]))
        good = [g for g in good if len(g)]
        if not templates:
            raise ValueError("match detector: no usable prompt example (boxes of at least "
                             "3 x 3 pixels with some contrast are needed)")
        bank, ref = np.zeros((0, p.features.dim), np.float32), 1.0
        if p.anomaly_power > 0:
            if not good:
                raise ValueError("match detector: no defect-free tokens (the prompt boxes "
                                 "cover their images and the recipe has no good parts)")
            ref = self._reference(good)
            bank = np.concatenate(good)
            if len(bank) > p.max_bank:
                bank = bank[greedy_coreset(bank, p.max_bank, 32, p.seed, progress)]
        self.ref = ref
        self._set(templates, masks, t_cls, t_ids, np.ascontiguousarray(bank, np.float32))
        self.region.fit(regions if p.class_power > 0 else [])
        self.background = (self._background(surfaces, progress) if p.calibrate
                           else np.zeros(len(self._variants), np.float32))

    def _background(self, surfaces: list[tuple[np.ndarray, list]], progress: bool
                    ) -> np.ndarray:
        """Per template variant: its highest correlation on defect-free surface (prompt
        images away from their boxes, good parts). A template that matches the good
        texture everywhere must then beat that level to score high."""
        m = self.params.margin_px
        out = np.zeros(len(self._variants), np.float32)
        for img, boxes in tqdm(surfaces, "match: calibrate on good surface",
                               disable=not progress):
            levels = [FrameCorrelator(f) for f in pyramid(img.astype(np.float32), MAX_LEVEL)]
            for k in range(len(self._variants)):
                frame, t, f = self._at_level(levels, k)
                spectrum = frame.template_spectrum(t)
                if spectrum is None:  # flat: correlates with nothing
                    continue
                ncc = frame.ncc(t.shape, spectrum)
                th, tw = min(t.shape[0], frame.shape[0]), min(t.shape[1], frame.shape[1])
                ok = np.ones(ncc.shape, bool)
                for x, y, bw, bh in boxes:  # windows that overlap a prompt box
                    x, y, bw, bh = x / f, y / f, bw / f, bh / f
                    x0, y0 = max(0, int(x - m / f - tw + 1)), max(0, int(y - m / f - th + 1))
                    y1, x1 = int(np.ceil(y + bh + m / f)), int(np.ceil(x + bw + m / f))
                    ok[y0:max(0, y1), x0:max(0, x1)] = False
                if ok.any():
                    out[k] = max(out[k], float(ncc[ok].max()))
        return out

    def _at_level(self, levels: list[FrameCorrelator], k: int
                  ) -> tuple[FrameCorrelator, np.ndarray, int]:
        """(frame, template, scale) for variant `k`: its coarsest level that the frame's
        pyramid has; scale is the level's pixel size in frame pixels."""
        ladder = self._ladders[k]
        level = min(len(ladder), len(levels)) - 1
        return levels[level], ladder[level], 1 << level

    def _crop(self, img: np.ndarray, bbox: tuple[float, ...], mask: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray] | None:
        """The example's grey crop and its mask within the box (all True without one)."""
        x, y, w, h = (int(round(v)) for v in bbox)
        x, y = max(0, x), max(0, y)
        crop = img[y:y + max(h, 3), x:x + max(w, 3)].astype(np.float32)
        if min(crop.shape) < 3 or float(crop.std()) < 1e-3:
            return None
        m = (np.ones(crop.shape, bool) if mask is None or mask.shape != img.shape[:2]
             else mask[y:y + crop.shape[0], x:x + crop.shape[1]].copy())
        if not m.any():
            m[:] = True
        side = self.params.max_template_side
        if max(crop.shape) > side:
            k = side / max(crop.shape)
            size = (max(3, round(crop.shape[1] * k)), max(3, round(crop.shape[0] * k)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            m = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        return np.ascontiguousarray(crop), m

    def _reference(self, good: list[np.ndarray]) -> float:
        """Distance that a held-out defect-free token exceeds with `ref_quantile`
        probability: each image's good tokens against the others' (one image: itself
        split in halves)."""
        if len(good) == 1:
            g = good[0]
            good = [g[0::2], g[1::2]] if len(g) > 1 else [g, g]
        d = []
        for i, g in enumerate(good):
            rest = np.concatenate([x for j, x in enumerate(good) if j != i])
            d.append(NearestNeighbours(rest, "numpy").search(g))
        return max(float(np.quantile(np.concatenate(d), self.params.ref_quantile)), 1e-6)

    def _set(self, templates, masks, t_cls, t_ids, bank) -> None:
        self.templates, self.template_masks = templates, masks
        self.template_classes, self.template_ids = t_cls, t_ids
        self.classes = list(dict.fromkeys(t_cls))
        self.bank = bank
        self._nn = NearestNeighbours(bank, "numpy") if len(bank) else None
        self._variants = [(v, vm, c, i) for t, m, c, i in zip(templates, masks, t_cls, t_ids,
                                                               strict=True)
                          for v, vm in self._variants_of(t, m)]
        self._ladders = [pyramid(v, coarse_level(v.shape, self.params.coarse_side))
                         for v, _, _, _ in self._variants]  # per variant: level 0 .. its own
        self._spectra = SpectrumCache()

    def _variants_of(self, t: np.ndarray, m: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The template (and its mask) in the configured orientations and scales: a crack
        prompted vertically is found horizontal too."""
        p = self.params

        def views(a: np.ndarray) -> list[np.ndarray]:
            return [a, a[:, ::-1], a[::-1, ::-1], a[::-1, :],
                    a.T, a.T[:, ::-1], a.T[::-1, ::-1], a.T[::-1, :]][: p.orientations]

        out = []
        for v, vm in zip(views(t), views(m), strict=True):
            for k in p.scales:
                if k == 1.0:
                    out.append((np.ascontiguousarray(v), np.ascontiguousarray(vm)))
                    continue
                h, w = (max(3, round(n * k)) for n in v.shape)
                out.append((cv2.resize(v, (w, h), interpolation=cv2.INTER_AREA if k < 1
                                       else cv2.INTER_LINEAR),
                            cv2.resize(vm.astype(np.uint8), (w, h),
                                       interpolation=cv2.INTER_NEAREST) > 0))
        return out

    def enrolled_state(self) -> dict[str, np.ndarray]:
        shapes = np.array([t.shape for t in self.templates], np.int64).reshape(-1, 2)
        return {"bank": self.bank, "ref": np.array(self.ref, np.float64),
                "background": self.background,
                "template_pixels": np.concatenate([t.ravel() for t in self.templates]),
                "template_shapes": shapes,
                "template_masks": np.concatenate([m.ravel() for m in self.template_masks]),
                "template_classes": np.array(self.template_classes, dtype=str),
                "template_ids": np.array(self.template_ids, dtype=str),
                "class_protos": self.region.protos,
                "class_proto_classes": np.array(self.region.proto_classes, dtype=str)}

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        shapes = np.asarray(state["template_shapes"], np.int64).reshape(-1, 2)
        pix = np.asarray(state["template_pixels"], np.float32)
        if int(shapes.prod(1).sum()) != len(pix):
            raise ValueError(f"enrolled state: template shapes need {int(shapes.prod(1).sum())} "
                             f"pixels, got {len(pix)}")
        cls = [str(c) for c in state["template_classes"]]
        ids = [str(c) for c in state["template_ids"]]
        if not len(cls) == len(ids) == len(shapes):
            raise ValueError("enrolled state: template classes, ids and shapes differ in "
                             "number")
        mpix = np.asarray(state["template_masks"], bool)
        if len(mpix) != len(pix):
            raise ValueError(f"enrolled state: {len(mpix)} template mask pixels for "
                             f"{len(pix)} template pixels")
        templates, masks, at = [], [], 0
        for h, w in shapes:
            templates.append(pix[at:at + h * w].reshape(h, w).copy())
            masks.append(mpix[at:at + h * w].reshape(h, w).copy())
            at += h * w
        bg = np.asarray(state["background"], np.float32)
        n_variants = len(templates) * self.params.orientations * len(self.params.scales)
        if bg.shape != (n_variants,):
            raise ValueError(f"enrolled state: {bg.size} background levels for "
                             f"{n_variants} template variants")
        bank = np.asarray(state["bank"], np.float32).reshape(-1, self.params.features.dim)
        self.ref = float(state["ref"])
        self._set(templates, masks, cls, ids, bank)
        self.background = bg
        if "class_protos" not in state or "class_proto_classes" not in state:
            raise ValueError("enrolled state: no class_protos / class_proto_classes (an "
                             "enrolment of an older matcher)")
        self.region.set(state["class_protos"], [str(c) for c in state["class_proto_classes"]])

    # -- detection ---------------------------------------------------------------
    def encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        """The frame (mono, at most `max_side`), its token grid (None when neither the
        anomaly cue nor the class check needs it) and the factor it was shrunk by: none
        depends on the enrolment, so evaluation encodes each test image once for all
        prompt seeds."""
        p = self.params
        img, f = working_size(mono(image), p.max_side)
        return img, (self.extractor.grid(img) if p.anomaly_power > 0 or p.class_power > 0
                     else None), f

    def anomaly(self, img: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Per-pixel distance of the frame's tokens to the nearest defect-free token."""
        if self._nn is None:
            raise RuntimeError("match detector used before enroll()")
        d = self._nn.search(grid.reshape(-1, grid.shape[-1])).reshape(grid.shape[:2])
        return anomaly_map(d, img.shape, self.extractor.scale(img.shape),
                           self.params.blur_sigma)

    def detect_tokens(self, encoded: tuple[np.ndarray, np.ndarray | None, float],
                      hw: tuple[int, int]) -> list[Detection]:
        """Detections of a frame `encode` returned (`hw`: its shape)."""
        p = self.params
        img, grid, shrunk = encoded
        amap = self.anomaly(img, grid) if grid is not None and p.anomaly_power > 0 else None
        levels = [FrameCorrelator(f) for f in pyramid(img.astype(np.float32), MAX_LEVEL)]
        used = [min(len(ladder), len(levels)) - 1 for ladder in self._ladders]
        self._spectra.begin(levels, [used.count(level) for level in range(len(levels))])
        jobs = list(zip(range(len(self._variants)), self.background.tolist(), strict=True))
        if p.threads > 1:  # scipy's FFT and OpenCV release the GIL: variants side by side
            per_variant = list(pool("match", p.threads).map(
                lambda job: self._peaks(levels, amap, *job), jobs))
        else:
            per_variant = [self._peaks(levels, amap, *job) for job in jobs]
        found: dict[str, list[tuple[float, tuple[int, int, int, int], str, np.ndarray]]] = {}
        for cls, peaks in per_variant:  # in variant order, whatever the threads
            found.setdefault(cls, []).extend(peaks)
        dets = []
        for cls, items in found.items():
            if not items:
                continue
            b = np.array([[x, y, x + w, y + h] for _, (x, y, w, h), _, _ in items], np.float64)
            keep = nms(b, np.array([it[0] for it in items]), p.nms_iou, p.max_per_class)
            for i in keep:
                s, (x, y, w, h), pid, mask = items[i]
                dets.append(Detection(cls=cls, score=s, bbox=(float(x), float(y), float(w),
                                                               float(h)),
                                      mask=mask, area_px=float(mask.sum()), prompt_id=pid))
        if p.class_power > 0 and grid is not None and dets:
            probs = self.region.probabilities(grid, self.extractor.scale(img.shape),
                                              np.array([d.bbox for d in dets]),
                                              [d.cls for d in dets])
            for d, q in zip(dets, probs.tolist(), strict=True):
                d.score *= q ** p.class_power
        dets.sort(key=lambda d: -d.score)
        return [grow(d, shrunk, hw) for d in dets]

    def _peaks(self, levels: list[FrameCorrelator], amap: np.ndarray | None, k: int, bg: float
               ) -> tuple[str, list[tuple[float, tuple[int, int, int, int], str, np.ndarray]]]:
        """Template variant `k`'s scored peaks in the frame (`levels`: its pyramid):
        (class, [(score, box, prompt id, mask)]). Peaks found at a coarse level are boxed
        at the template's full size, within one coarse pixel of where they are."""
        p = self.params
        t, tm, cls, pid = self._variants[k]
        frame, tl, f = self._at_level(levels, k)
        spectrum = self._spectra.get(frame, k, tl)
        if spectrum is None:  # flat: correlates with nothing
            return cls, []
        ncc = frame.ncc(tl.shape, spectrum)
        full = levels[0]
        th, tw = min(t.shape[0], full.shape[0]), min(t.shape[1], full.shape[1])
        mm = tm[:th, :tw]
        n = max(3, (min(min(tl.shape[0], frame.shape[0]), min(tl.shape[1], frame.shape[1]))
                    // 2) | 1)
        peak = (ncc >= cv2.dilate(ncc, np.ones((n, n), np.uint8))) & (ncc > p.min_ncc)
        at = cv2.findNonZero(peak.view(np.uint8))  # row-major, as np.nonzero; faster
        if at is None:
            return cls, []
        xs, ys = at.reshape(-1, 2).T
        vals = ncc[ys, xs]
        if len(ys) > p.peaks_per_template:
            top = np.argsort(-vals, kind="stable")[: p.peaks_per_template]
            ys, xs, vals = ys[top], xs[top], vals[top]
        v = np.maximum(vals.astype(np.float64), 0.0)
        scores = (to_score(v, bg, 0.5, 1.0) if bg > 0 else v) ** p.ncc_power
        ys = np.minimum(ys * f, full.shape[0] - th)
        xs = np.minimum(xs * f, full.shape[1] - tw)
        out = []
        for y, x, s in zip(ys.tolist(), xs.tolist(), scores.tolist(), strict=True):
            if amap is not None:
                a = float(amap[y:y + th, x:x + tw].max())
                s *= float(to_score(a, self.ref, 0.5)) ** p.anomaly_power
            if s >= p.min_score:
                out.append((s, (x, y, tw, th), pid, mm))
        return cls, out

    @property
    def n_variants(self) -> int:
        """Template variants (examples x orientations x scales) correlated per frame: what
        the matching time grows with."""
        return len(self._variants)

    @property
    def model_sha256(self) -> str:
        """sha256 of the encoder, this code's version and the parameters."""
        h = hashlib.sha256(self.extractor.encoder.sha256.encode())
        h.update(f"\0{VERSION}\0".encode())
        h.update(json.dumps(self.params.model_dump(exclude={"threads"}),  # same results
                            sort_keys=True).encode())
        return h.hexdigest()
