"""UnknownBranch: good-part bank + calibrated threshold -> `unknown` detections.

Any detector can own one (see inspector/inference/detectors/with_unknown.py): `enroll(normals)`
builds the token bank of the good parts (features.py), reduces it with a greedy coreset
(bank.py) and calibrates the threshold on held-out folds to the recipe's target
false-alarm rate (calibrate.py), after rescaling the tokens of the frame's outer rings
and corner blocks to the spread of interior ones on the same held-out parts (without it,
7 of 200 new demo good parts alarmed at a frame corner; on MagTile the bright bands at a
tile's edge were the highest-scored good parts, BENCHMARKS.md); `detect(image)` returns
regions far from every good token (anomaly.py). `state()` / `load_state()` carry the
enrolment as plain arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from tqdm import tqdm

from inspector.core.strict import StrictModel
from inspector.inference.detectors.base import Detection
from inspector.inference.unknown.anomaly import (
    anomaly_map,
    border_class_count,
    border_classes,
    regions,
    to_score,
    topk_mean,
)
from inspector.inference.unknown.bank import Backend, NearestNeighbours, greedy_coreset
from inspector.inference.unknown.calibrate import Calibration, folds, threshold_for_rate
from inspector.inference.unknown.features import FeatureParams, TokenExtractor

log = logging.getLogger(__name__)
VERSION = "unknown/4"  # bump when enrolment changes: invalidates recipe caches


class UnknownParams(StrictModel):
    """`detector.params.unknown` of a recipe (all optional)."""

    features: FeatureParams = Field(default_factory=FeatureParams)
    coreset_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_bank: Annotated[int, Field(ge=16)] = 100_000  # tokens kept at most
    per_image_ratio: Annotated[float, Field(gt=0, le=1)] = 0.25  # first-stage coreset
    stage_above: Annotated[int, Field(ge=1000)] = 20_000  # tokens before 2-stage coreset
    proj_dim: Annotated[int, Field(ge=8, le=512)] = 32  # k-center pass cost is linear in it
    search: Backend = "auto"  # see bank.NearestNeighbours; auto: GPU, else fastest installed
    nprobe: Annotated[int, Field(ge=1)] = 4  # faiss-ivf lists visited per query
    hnsw_m: Annotated[int, Field(ge=4, le=128)] = 32  # faiss-hnsw links per node
    ef_search: Annotated[int, Field(ge=1, le=1024)] = 16  # faiss-hnsw candidates per query
    pca_dim: Annotated[int, Field(ge=4)] | None = None  # faiss: search a PCA projection
    blur_sigma: Annotated[float, Field(ge=0)] = 4.0  # pixels of the encoded frame
    folds: Annotated[int, Field(ge=2, le=20)] = 4
    low_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8
    min_area_px: Annotated[int, Field(ge=1)] = 16
    max_regions: Annotated[int, Field(ge=1)] = 20
    min_normals: Annotated[int, Field(ge=2)] = 3
    border_norm: bool = True  # rescale tokens near the frame's edge to the interior (held-out)
    border_rings: Annotated[int, Field(ge=1, le=8)] = 2  # token rings that count as edge
    border_quantile: Annotated[float, Field(gt=0.5, lt=1)] = 0.99
    # what a part is judged by: the anomaly map's maximum, or the mean of its `topk` most
    # distant tokens (better image AUROC on MagTile, BSData and CPLID, BENCHMARKS.md; it
    # can dilute a defect only a few tokens wide in a large frame, so it is opt-in)
    image_score: Literal["map_max", "topk_mean"] = "map_max"
    topk: Annotated[int, Field(ge=1, le=10_000)] = 10
    seed: int = 0


class UnknownBranch:
    """Regions of a frame that no good part of the recipe looks like."""

    def __init__(self, params: UnknownParams | dict | None = None, target_rate: float = 0.01,
                 at_threshold: float = 0.5) -> None:
        self.params = (params if isinstance(params, UnknownParams)
                       else UnknownParams.model_validate(params or {}))
        self.target_rate = target_rate
        self.at_threshold = at_threshold  # score a region exactly at the threshold gets
        self.extractor = TokenExtractor(self.params.features)
        self.bank: np.ndarray | None = None
        self.nn: NearestNeighbours | None = None
        self.calibration: Calibration | None = None
        self.threshold = np.inf
        self.border_scale = self._no_border_scale()  # per anomaly.border_classes class
        self._sha: str | None = None  # cached: results name the model on every frame

    # --- enrolment -----------------------------------------------------------------
    def tokens(self, images: list[np.ndarray], progress: bool = False,
               what: str = "good-part tokens") -> list[np.ndarray]:
        out = []
        for im in tqdm(images, what, disable=not progress):
            g = self.extractor.grid(im)
            out.append(g.reshape(-1, g.shape[-1]))
        return out

    def stage_one(self, per_image: list[np.ndarray], progress: bool = False
                  ) -> tuple[list[np.ndarray], int]:
        """Per-image coresets when the set is large (`stage_above` tokens), and the
        original token count; enrolment reuses them for every calibration fold."""
        p = self.params
        total = sum(len(t) for t in per_image)
        if total > p.stage_above:  # k-center per image first keeps the global step affordable
            per_image = [t[greedy_coreset(t, max(1, int(len(t) * p.per_image_ratio)),
                                          p.proj_dim, p.seed)]
                         for t in tqdm(per_image, "coreset per image", disable=not progress)]
        return per_image, total

    def build_bank(self, per_image: list[np.ndarray], progress: bool = False,
                   total: int | None = None) -> np.ndarray:
        """Coreset of the tokens of several good parts (two stages for large sets).

        `total`: the token count before `stage_one` when `per_image` is its output.
        """
        p = self.params
        if total is None:
            per_image, total = self.stage_one(per_image, progress)
        x = np.concatenate(per_image)
        n = min(p.max_bank, max(1, int(round(total * p.coreset_ratio))), len(x))
        return np.ascontiguousarray(x[greedy_coreset(x, n, p.proj_dim, p.seed, progress)])

    def enroll(self, normals: list[np.ndarray], progress: bool = False) -> Calibration:
        self._check_count(len(normals))  # before encoding them
        return self.enroll_tokens(self.tokens(normals, progress),
                                  [im.shape[:2] for im in normals], progress)

    def enroll_tokens(self, toks: list[np.ndarray], shapes: list[tuple[int, ...]],
                      progress: bool = False) -> Calibration:
        """`enroll` from the good parts' `tokens()` and frame shapes (the evaluation
        encodes its images once for all reference counts)."""
        p = self.params
        self._check_count(len(toks))
        reduced, _ = self.stage_one(toks, progress)
        dists: list[np.ndarray] = [np.empty(0)] * len(toks)
        for k, held in enumerate(folds(len(toks), p.folds, p.seed)):
            keep = np.setdiff1d(np.arange(len(toks)), held)
            nn = self._index(self.build_bank([reduced[i] for i in keep],
                                             total=sum(len(toks[i]) for i in keep)))
            for i in tqdm(held, f"calibrate fold {k + 1}", disable=not progress):
                dists[i] = nn.search(toks[i]).reshape(self._grid_shape(shapes[i]))
        scale = self._border_scale(dists) if p.border_norm else self._no_border_scale()
        scores = np.array([self.part_score(self._scaled(d, scale), sh)[0]
                           for d, sh in zip(dists, shapes, strict=True)])
        cal = threshold_for_rate(scores, self.target_rate)
        bank = self.build_bank(reduced, progress, total=sum(len(t) for t in toks))
        self.set_enrolment(bank, cal, scale)
        log.log(logging.INFO if cal.enough_parts else logging.WARNING,
                "%s; bank %d tokens; border scale %s", cal.summary(), len(self.bank),
                np.round(scale, 3).tolist())
        return cal

    def _check_count(self, n: int) -> None:
        if n < self.params.min_normals:
            raise ValueError(f"unknown-defect branch needs >= {self.params.min_normals} "
                             f"good-part images, got {n}")

    def _no_border_scale(self) -> np.ndarray:
        return np.ones(border_class_count(self.params.border_rings), np.float32)

    def _border_scale(self, dists: list[np.ndarray]) -> np.ndarray:
        """Per border class, interior quantile / class quantile of held-out distances
        (1 for a class no held-out part has, e.g. the inner rings of tiny frames)."""
        p = self.params
        n = border_class_count(p.border_rings)
        vals: list[list[np.ndarray]] = [[] for _ in range(n)]
        for d in dists:
            cls = border_classes(*d.shape, p.border_rings)
            for c in range(n):
                vals[c].append(d[cls == c])
        qs = [np.quantile(np.concatenate(v), p.border_quantile) if sum(len(a) for a in v)
              else np.nan for v in vals]
        ref = qs[p.border_rings] if np.isfinite(qs[p.border_rings]) else np.nanmax(qs)
        out = np.array([ref / x if np.isfinite(x) and x > 0 else 1.0 for x in qs])
        return np.clip(out, 0.25, 4.0).astype(np.float32)

    def _index(self, bank: np.ndarray) -> NearestNeighbours:
        p = self.params
        return NearestNeighbours(bank, p.search, nprobe=p.nprobe, pca_dim=p.pca_dim,
                                 hnsw_m=p.hnsw_m, ef_search=p.ef_search)

    def set_enrolment(self, bank: np.ndarray, cal: Calibration,
                      border_scale: np.ndarray | None = None) -> None:
        """Make `bank`, `cal` and the border scale the enrolment (search index rebuilt)."""
        self.bank = bank
        self.nn = self._index(bank)
        self._sha = None
        self.calibration = cal
        self.threshold = cal.threshold
        self.border_scale = (self._no_border_scale() if border_scale is None
                             else np.asarray(border_scale, np.float32))

    # --- detection -------------------------------------------------------------------
    def _dist(self, image: np.ndarray) -> np.ndarray:
        """Border-scaled distance of each token of `image` to the bank, (h, w)."""
        return self.distances(self.extractor.grid(image))

    def distances(self, g: np.ndarray) -> np.ndarray:
        """Border-scaled distance of each token of a (h, w, C) grid to the bank, (h, w)."""
        if self.nn is None:
            raise RuntimeError("unknown-defect branch used before enroll()")
        return self._scaled(self.nn.search(g.reshape(-1, g.shape[-1])).reshape(g.shape[:2]),
                            self.border_scale)

    def _scaled(self, dist: np.ndarray, scale: np.ndarray) -> np.ndarray:
        if np.all(scale == 1.0):
            return dist
        return dist * scale[border_classes(*dist.shape, self.params.border_rings)]

    def _to_map(self, dist: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return anomaly_map(dist, shape, self.extractor.scale(shape), self.params.blur_sigma)

    def part_score(self, dist: np.ndarray, shape: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """The part's score (what the threshold is calibrated on) and its anomaly map, from
        its token distances and the frame's shape."""
        amap = self._to_map(dist, shape)
        if self.params.image_score == "map_max":
            return float(amap.max()), amap
        return topk_mean(dist, self.params.topk), amap

    def _grid_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        f = self.extractor.scale(shape)
        H, W = (max(16, round(v * f)) for v in shape[:2]) if f != 1.0 else shape[:2]
        return -(-H // 8), -(-W // 8)

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        """Distance to the nearest good token, per pixel of `image` (raw units)."""
        return self._to_map(self._dist(image), image.shape)

    def detect(self, image: np.ndarray) -> list[Detection]:
        p = self.params
        score, amap = self.part_score(self._dist(image), image.shape)
        if p.image_score == "map_max":
            return regions(amap, self.threshold, self.at_threshold, p.low_ratio,
                           p.min_area_px, p.max_regions)
        if score < self.threshold:
            return []
        # the part is anomalous; where: the region around the map's peak, at the same
        # relative level as the hysteresis of map_max, scored by the part's score
        found = regions(amap, float(amap.max()), self.at_threshold, p.low_ratio, 1, 1)
        part = float(to_score(score, self.threshold, self.at_threshold))
        return [replace(d, score=part) for d in found]

    # --- state -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        if self.bank is None or self.calibration is None:
            raise RuntimeError("unknown-defect branch has no enrolment to save")
        cal = self.calibration
        return {
            "bank": self.bank,
            "calibration": np.array([cal.threshold, cal.target_rate, cal.achieved_rate,
                                     cal.n_heldout, cal.score_max, cal.score_median],
                                    np.float64),
            "calibration_method": np.array(cal.method),
            "border_scale": self.border_scale,
            "params_json": np.array(self.params.model_dump_json()),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore `state()`; ValueError (changing nothing) for a state that does not fit."""
        self.set_enrolment(*self.parse_state(state))

    def parse_state(self, state: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, Calibration, np.ndarray]:
        """Check a `state()` against these params without applying it."""
        try:
            saved = json.loads(str(state["params_json"]))
            c = np.asarray(state["calibration"], np.float64)
            bank = np.ascontiguousarray(state["bank"], np.float32)
            method = str(state["calibration_method"])
            border = np.asarray(state["border_scale"], np.float32)
        except KeyError as exc:
            raise ValueError(f"unknown-branch state lacks {exc}") from None
        if saved != json.loads(self.params.model_dump_json()):
            raise ValueError("unknown-branch state was made with other params")
        if (bank.ndim != 2 or bank.shape[1] != self.params.features.dim or c.shape != (6,)
                or border.shape != (border_class_count(self.params.border_rings),)):
            raise ValueError(f"unknown-branch state has bank {bank.shape}, calibration "
                             f"{c.shape}, border scale {border.shape}")
        cal = Calibration(threshold=float(c[0]), target_rate=float(c[1]),
                          achieved_rate=float(c[2]), n_heldout=int(c[3]), method=method,
                          score_max=float(c[4]), score_median=float(c[5]))
        return bank, cal, border

    def sha256(self) -> str:
        """Encoder, code version, params and enrolment: equal inputs, equal hash.

        Computed once per enrolment (the bank is megabytes; results ask on every frame).
        """
        if self._sha is not None:
            return self._sha
        h = hashlib.sha256(VERSION.encode())
        h.update(self.extractor.encoder.sha256.encode())
        h.update(self.params.model_dump_json().encode())
        if self.bank is not None:
            h.update(np.float64(self.threshold).tobytes())
            h.update(self.border_scale.tobytes())
            h.update(self.bank.tobytes())
        self._sha = h.hexdigest()
        return self._sha
