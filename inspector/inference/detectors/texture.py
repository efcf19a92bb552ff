"""The first real detector: good-part statistics plus nearest-prototype classification.

Needs no training, so the inspection loop is honest from the first recipe:

1. Enrol: register the recipe's good parts to a common reference (phase correlation),
   and keep a per-pixel mean and spread of a difference-of-Gaussian band stack. The
   anomaly threshold is calibrated leave-one-out on those same good parts, so it sits
   above the highest score any unseen good part of the bank produced.
2. Each prompt example becomes a prototype: the same anomaly regions the detector would
   find on its image, described by shape (area, elongation, compactness, solidity) and
   appearance (darker/brighter than the reference, on print or not, fine or coarse).
3. Detect: register, z-score against the good-part model, hysteresis threshold,
   connected components; each region goes to its nearest prototype, or to "unknown"
   when it is far from all of them.

Assumes parts of one recipe share a fixed layout up to a small translation (a fixture);
rotation is not modelled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

import cv2
import numpy as np
from pydantic import Field, field_validator
from tqdm import tqdm

from inspector.inference.detectors.base import (
    Detection,
    Detector,
    DetectorParams,
    PromptExample,
    mono,
)
from inspector.inference.detectors.features import (
    FEATURE_NAMES,
    Aligner,
    BandStack,
    Region,
    find_regions,
    normalise,
    print_map,
    region_descriptor,
    shift_image,
)

VERSION = "texture/1"
Pos = Annotated[float, Field(gt=0)]


class TextureParams(DetectorParams):
    """`detector.params` of a recipe with `detector.kind: texture`."""

    bands: list[tuple[Pos, Pos]] = Field(
        default_factory=lambda: [(1.0, 3.0), (2.0, 6.0), (4.0, 16.0), (8.0, 32.0)],
        min_length=1,
    )
    line_orients: Annotated[int, Field(ge=0, le=16)] = 4  # oriented line filters (0: off)
    line_sigma: Pos = 4.0  # their length scale along the line (pixels)
    margin: Annotated[float, Field(ge=1.0, le=10.0)] = 1.2  # threshold over worst good part
    low_ratio: Annotated[float, Field(gt=0, le=1)] = 0.6  # hysteresis: grow regions down to this
    min_area_px: Annotated[int, Field(ge=1)] = 6
    merge_px: Annotated[int, Field(ge=0, le=20)] = 4  # join fragments closer than this
    border_px: Annotated[int, Field(ge=0)] = 10  # ignore this frame margin (registration edge)
    std_smooth: Pos = 3.0  # spatial smoothing of the good-part variance (pixels)
    contrast_scale: Pos = 25.0  # grey levels that saturate the dark/bright descriptors
    unknown_factor: Pos = 1.5  # unknown beyond this times the prompts' own spread
    max_regions: Annotated[int, Field(ge=1)] = 50
    min_normals: Annotated[int, Field(ge=3)] = 4

    @field_validator("bands")
    @classmethod
    def _inner_below_outer(cls, bands: list[tuple[float, float]]) -> list[tuple[float, float]]:
        # in the model, not after it: load_recipe's check (inspector validate) sees it too
        for s1, s2 in bands:
            if not s1 < s2:
                raise ValueError(f"inner sigma must be < outer, got {s1, s2}")
        return bands


class TextureDetector(Detector):
    """Band-pass good-part model + nearest-prototype classifier on region descriptors."""

    kind = "texture"
    cacheable = True  # enrolled_state / load_enrolled_state

    def __init__(self, params: dict | None = None) -> None:
        self.params = TextureParams.parse(params or {})
        self.bank = BandStack(self.params.bands, self.params.line_orients, self.params.line_sigma)
        self.shape: tuple[int, int] | None = None
        self.threshold = 0.0
        self.normal_max: list[float] = []
        self.protos = np.zeros((0, len(FEATURE_NAMES)), np.float32)
        self.proto_cls: list[str] = []
        self.proto_ids: list[str] = []
        self.scale = np.ones(len(FEATURE_NAMES), np.float32)
        self.unknown_dist = np.inf
        self._sha256: str | None = None  # model_sha256, computed once per enrolment

    # --- enrolment -------------------------------------------------------------------
    def enroll(
        self, prompts: list[PromptExample], normals: list[np.ndarray], progress: bool = False
    ) -> None:
        p = self.params
        if len(normals) < p.min_normals:
            raise ValueError(f"texture detector needs >= {p.min_normals} good-part images, "
                             f"got {len(normals)}")
        normals = [mono(im) for im in normals]
        shape = normals[0].shape
        for i, im in enumerate(normals):
            if im.shape != shape:
                raise ValueError(f"normal image {i}: need {shape} like the first, got {im.shape}")
        fs = [normalise(im) for im in normals]
        aligner = Aligner(fs[0])
        ref = np.mean([aligner.align(f)[0] for f in fs], axis=0)
        self.aligner = Aligner(ref)  # the mean has no grain: steadier matching later
        self.align_ref = ref  # kept for enrolled_state(): the aligner is rebuilt from it
        aligned, shifts = zip(*(self.aligner.align(f) for f in fs), strict=True)
        self.ref = np.mean(aligned, axis=0).astype(np.float32)
        self.printed = print_map(self.ref)
        # Running sums keep memory at one band stack, whatever the number of good parts.
        n = len(aligned)
        total = np.zeros((len(self.bank), *shape), np.float64)
        total_sq = np.zeros_like(total)
        for f in tqdm(aligned, "good-part model", disable=not progress):
            b = self.bank(f)
            total += b
            total_sq += np.square(b, dtype=np.float64)
        self.mean, self.std = self._moments(total / n, total_sq / n, n)
        self.shape = shape
        # Leave-one-out: score each good part against a model that has not seen it.
        self.normal_max = []
        for f, shift in tqdm(list(zip(aligned, shifts, strict=True)), "calibrate",
                             disable=not progress):
            b = self.bank(f)
            mean, std = self._moments((total - b) / (n - 1),
                                      (total_sq - np.square(b, dtype=np.float64)) / (n - 1), n - 1)
            amap = self._anomaly(np.abs((b - mean) / std).max(0), shift)
            self.normal_max.append(float(amap.max()))
        self.threshold = p.margin * max(self.normal_max)
        self._enroll_prompts(prompts, progress)
        self._sha256 = None

    def _moments(self, mean: np.ndarray, mean_sq: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """Per-pixel mean and a smoothed, floored spread (unbiased variance)."""
        var = (np.maximum(mean_sq - np.square(mean), 0.0) * (n / max(n - 1, 1))).astype(np.float32)
        std = np.empty_like(var)
        for b in range(len(var)):
            v = cv2.GaussianBlur(var[b], (0, 0), self.params.std_smooth)
            s = np.sqrt(v)
            std[b] = np.maximum(s, 0.5 * float(np.median(s)) + 1e-3)
        return mean.astype(np.float32), std.astype(np.float32)

    def _enroll_prompts(self, prompts: list[PromptExample], progress: bool) -> None:
        feats, cls, ids = [], [], []
        for ex in tqdm(prompts, "prompts", disable=not progress):
            if ex.image.shape[:2] != self.shape:
                raise ValueError(f"prompt {ex.prompt_id}: image {ex.image.shape} does not match "
                                 f"the good parts {self.shape}")
            f_al, zabs, regions, (dx, dy) = self._analyse(ex.image)
            truth = np.zeros(self.shape, bool)
            if ex.mask is not None:
                truth = shift_image(ex.mask.astype(np.float32), -dx, -dy) > 0.5
            else:
                x, y, w, h = (int(round(v)) for v in ex.bbox)
                x, y = x - round(dx), y - round(dy)
                truth[max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = True
            near = cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            union = np.zeros(self.shape, bool)
            for r in regions:
                if (r.mask & near[r.y:r.y + r.h, r.x:r.x + r.w]).any():
                    union[r.y:r.y + r.h, r.x:r.x + r.w] |= r.mask
            if not union.any():  # too faint to be found: describe the annotated region
                union = truth
            if not union.any():
                continue
            ys, xs = np.nonzero(union)
            x0, y0 = int(xs.min()), int(ys.min())
            box_mask = union[y0:ys.max() + 1, x0:xs.max() + 1]
            feats.append(self._describe(x0, y0, box_mask, f_al, zabs))
            cls.append(ex.cls)
            ids.append(ex.prompt_id)
        self.protos = np.array(feats, np.float32).reshape(-1, len(FEATURE_NAMES))
        self.proto_cls, self.proto_ids = cls, ids
        if len(feats) >= 2:
            self.scale = np.maximum(self.protos.std(0), 0.1).astype(np.float32)
        spread = []
        for i in range(len(feats)):
            same = [j for j in range(len(feats)) if j != i and cls[j] == cls[i]]
            if same:
                spread.append(min(self._dist(self.protos[i], self.protos[same])))
        self.unknown_dist = self.params.unknown_factor * max(max(spread, default=0.5), 0.25)

    # --- detection -------------------------------------------------------------------
    def _analyse(self, image: np.ndarray):
        """Register, z-score and cut into regions; all in registered coordinates."""
        if self.shape is None:
            raise RuntimeError("texture detector used before enroll()")
        image = mono(image)
        if image.shape != self.shape:
            raise ValueError(f"image {image.shape} does not match the enrolled {self.shape}")
        f_al, shift = self.aligner.align(normalise(image))
        zabs = np.abs((self.bank(f_al) - self.mean) / self.std)
        amap = self._anomaly(zabs.max(0), shift)
        return f_al, zabs, self._regions(amap, zabs), shift

    def _anomaly(self, amap: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
        b = self.params.border_px + int(np.ceil(max(abs(shift[0]), abs(shift[1]))))
        if b:
            amap[:b], amap[-b:], amap[:, :b], amap[:, -b:] = 0, 0, 0, 0
        return amap

    def _regions(self, amap: np.ndarray, zabs: np.ndarray) -> list[Region]:
        p = self.params
        regions = find_regions(amap, zabs, self.threshold, self.threshold * p.low_ratio,
                               p.merge_px, p.min_area_px)
        return regions[: p.max_regions]

    def _describe(self, x: int, y: int, mask: np.ndarray, f_al: np.ndarray, zabs: np.ndarray):
        h, w = mask.shape
        pad = 8
        H, W = self.shape
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
        d = cv2.GaussianBlur(f_al[y0:y1, x0:x1] - self.ref[y0:y1, x0:x1], (0, 0), 1.0)
        m = np.zeros(d.shape, bool)
        m[y - y0:y - y0 + h, x - x0:x - x0 + w] = mask
        ring = ~cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if ring.any():
            d = d - float(np.median(d[ring]))  # remove the local shading offset
        sl = (slice(y, y + h), slice(x, x + w))
        return region_descriptor(
            mask, d[y - y0:y - y0 + h, x - x0:x - x0 + w], zabs[:, sl[0], sl[1]],
            self.printed[sl], self.params.contrast_scale, self.bank.coarse_index,
        )

    def _dist(self, v: np.ndarray, protos: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean(np.square((protos - v) / self.scale), axis=-1))

    def detect(self, image: np.ndarray) -> list[Detection]:
        f_al, zabs, regions, (dx, dy) = self._analyse(image)
        ox, oy = int(round(dx)), int(round(dy))
        out = []
        for r in regions:
            v = self._describe(r.x, r.y, r.mask, f_al, zabs)
            cls, pid, unknown = "unknown", None, True
            if len(self.protos):
                d = self._dist(v, self.protos)
                i = int(np.argmin(d))
                if d[i] <= self.unknown_dist:
                    cls, pid, unknown = self.proto_cls[i], self.proto_ids[i], False
            score = 1.0 - 0.5 * (self.threshold / r.peak) ** 1.5
            out.append(Detection(
                cls=cls, score=float(score), bbox=(float(r.x + ox), float(r.y + oy), float(r.w),
                                                   float(r.h)),
                mask=r.mask, area_px=float(r.mask.sum()), prompt_id=pid, unknown=unknown,
            ))
        return out

    # --- cacheable enrolment ------------------------------------------------------------
    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        """Everything enroll() computed, as plain arrays (strings as unicode arrays)."""
        if self.shape is None:
            return None
        return {
            "align_ref": self.align_ref,
            "ref": self.ref, "mean": self.mean, "std": self.std,
            "threshold": np.float64(self.threshold), "normal_max": np.array(self.normal_max),
            "protos": self.protos, "proto_cls": np.array(self.proto_cls, dtype=str),
            "proto_ids": np.array(self.proto_ids, dtype=str), "scale": self.scale,
            "unknown_dist": np.float64(self.unknown_dist),
        }

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore enrolled_state(); raise ValueError (changing nothing) if it does not fit."""
        need = ("align_ref", "ref", "mean", "std", "threshold", "normal_max", "protos",
                "proto_cls", "proto_ids", "scale", "unknown_dist")
        missing = [k for k in need if k not in state]
        if missing:
            raise ValueError(f"texture state lacks {', '.join(missing)}")
        ref = np.asarray(state["ref"], np.float32)
        shape = ref.shape
        n_feat, n_bands = len(FEATURE_NAMES), len(self.bank)
        protos = np.asarray(state["protos"], np.float32)
        cls = [str(v) for v in np.asarray(state["proto_cls"]).reshape(-1)]
        ids = [str(v) for v in np.asarray(state["proto_ids"]).reshape(-1)]
        checks = {
            "ref": ref.ndim == 2,
            "align_ref": np.shape(state["align_ref"]) == shape,
            "mean": np.shape(state["mean"]) == (n_bands, *shape),
            "std": np.shape(state["std"]) == (n_bands, *shape),
            "protos": protos.ndim == 2 and protos.shape[1] == n_feat,
            "proto_cls": len(cls) == len(protos),
            "proto_ids": len(ids) == len(protos),
            "scale": np.shape(state["scale"]) == (n_feat,),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"texture state does not fit these params: {', '.join(bad)}")
        self.align_ref = np.asarray(state["align_ref"])
        self.aligner = Aligner(self.align_ref)
        self.ref, self.printed = ref, print_map(ref)
        self.mean = np.asarray(state["mean"], np.float32)
        self.std = np.asarray(state["std"], np.float32)
        self.threshold = float(state["threshold"])
        self.normal_max = [float(v) for v in np.asarray(state["normal_max"]).reshape(-1)]
        self.protos, self.proto_cls, self.proto_ids = protos, cls, ids
        self.scale = np.asarray(state["scale"], np.float32)
        self.unknown_dist = float(state["unknown_dist"])
        self.shape = shape
        self._sha256 = None

    @property
    def model_sha256(self) -> str:
        """Hash of code version, params and the enrolled state: equal inputs, equal hash.

        Computed once per enrolment: every result names it.
        """
        if self._sha256 is not None:
            return self._sha256
        h = hashlib.sha256(VERSION.encode())
        h.update(json.dumps(self.params.model_dump(), sort_keys=True).encode())
        if self.shape is not None:
            h.update(np.float64(self.threshold).tobytes())
            for a in (self.ref, self.mean, self.std, self.protos, self.scale):
                h.update(np.ascontiguousarray(a).tobytes())
            h.update(json.dumps([self.proto_cls, self.proto_ids]).encode())
        self._sha256 = h.hexdigest()
        return self._sha256
