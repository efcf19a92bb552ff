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

Each frame is looked at twice (`Scale`): at native scale, and, unless `coarse` is null,
at half size with standardised grey levels, each against its own bank and border scale.
The two anomaly maps are added, each divided by its unit (the median held-out good
part's score at that scale), and the threshold is calibrated on the sum. On MagTile the
coarse look lifts the image AUROC from 0.910 to 0.965 with 600 good parts and from 0.870
to 0.895 with 64 (large faint unevenness, lighting that varies), for a quarter more
encoder work (BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
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
VERSION = "unknown/5"  # bump when enrolment changes: invalidates recipe caches


class CoarseScale(StrictModel):
    """The second, coarser look at each frame (`unknown.params.coarse`; null: none).

    Measured on MagTile (BENCHMARKS.md): the frame at half size with standardised grey
    levels sees what the native pass misses (large faint unevenness, lighting that
    differs from part to part), and the sum of the two maps ranks parts better than
    either alone; on BSData and CPLID it ranks them about as well as the native look.
    """

    zoom: Annotated[float, Field(ge=0.1, le=0.9)] = 0.5  # of the native pass's frame size
    normalize: bool = True  # standardise the grey levels of each frame first


class UnknownParams(StrictModel):
    """`detector.params.unknown` of a recipe (all optional)."""

    features: FeatureParams = Field(default_factory=FeatureParams)
    coarse: CoarseScale | None = Field(default_factory=CoarseScale)
    coreset_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_bank: Annotated[int, Field(ge=16)] = 100_000  # tokens kept at most
    per_image_ratio: Annotated[float, Field(gt=0, le=1)] = 0.25  # first-stage coreset
    stage_above: Annotated[int, Field(ge=1000)] = 20_000  # tokens before 2-stage coreset
    proj_dim: Annotated[int, Field(ge=8, le=512)] = 32  # k-center pass cost is linear in it
    search: Backend = "auto"  # see bank.NearestNeighbours; auto: GPU, else fastest installed
    nprobe: Annotated[int, Field(ge=1)] = 4  # faiss-ivf lists visited per query
    hnsw_m: Annotated[int, Field(ge=4, le=128)] = 32  # faiss-hnsw links per node
    ef_search: Annotated[int, Field(ge=1, le=1024)] = 16  # faiss-hnsw candidates per query
    # faiss-hnsw: this share of a frame's tokens, the most distant, searched again with
    # refine_ef candidates (bank.py: the beam misses at the tokens that score a part)
    refine: Annotated[float, Field(ge=0, le=1)] = 0.02
    refine_ef: Annotated[int, Field(ge=1, le=4096)] = 256
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
    # a prompt-class detection counts only where this map reaches `confirm` times the
    # threshold (0: off, every detection counts): one that lies where the part looks like
    # the good parts is dropped (WithUnknown). Opt-in: it needs a good-part bank that
    # covers the product (on the demo the classes' false alarms on good parts lie at
    # 0.61-0.83 of the threshold, the defects they find from 0.77; BENCHMARKS.md)
    confirm: Annotated[float, Field(ge=0, le=2)] = 0.0
    seed: int = 0


@dataclass
class Scale:
    """One look at the frame: its extractor and, once enrolled, bank, index, border scale
    and unit (the held-out good parts' median score at this scale; the maps of several
    scales are added in these units, so that neither dominates by its raw spread)."""

    extractor: TokenExtractor
    bank: np.ndarray | None = None
    nn: NearestNeighbours | None = None
    border_scale: np.ndarray | None = None
    unit: float = 1.0


class UnknownBranch:
    """Regions of a frame that no good part of the recipe looks like."""

    def __init__(self, params: UnknownParams | dict | None = None, target_rate: float = 0.01,
                 at_threshold: float = 0.5) -> None:
        self.params = (params if isinstance(params, UnknownParams)
                       else UnknownParams.model_validate(params or {}))
        self.target_rate = target_rate
        self.at_threshold = at_threshold  # score a region exactly at the threshold gets
        f = self.params.features
        self.scales = [Scale(TokenExtractor(f))]
        if self.params.coarse is not None:
            c = self.params.coarse
            self.scales.append(Scale(TokenExtractor(
                f.model_copy(update={"zoom": f.zoom * c.zoom, "normalize": c.normalize}),
                share=False)))
        self.calibration: Calibration | None = None
        self.threshold = np.inf
        self._sha: str | None = None  # cached: results name the model on every frame

    # the native scale, by its old names (the evaluation reports them)
    @property
    def extractor(self) -> TokenExtractor:
        return self.scales[0].extractor

    @property
    def bank(self) -> np.ndarray | None:
        return self.scales[0].bank

    @property
    def bank_tokens(self) -> int:
        """Tokens in the banks of all scales."""
        return sum(len(s.bank) for s in self.scales if s.bank is not None)

    # --- enrolment -----------------------------------------------------------------
    def grids(self, image: np.ndarray) -> list[np.ndarray]:
        """The (h, w, C) token grid of `image` at each scale."""
        return [s.extractor.grid(image) for s in self.scales]

    def tokens(self, images: list[np.ndarray], progress: bool = False,
               what: str = "good-part tokens") -> list[list[np.ndarray]]:
        """Per image, its (n, C) tokens at each scale."""
        return [[g.reshape(-1, g.shape[-1]) for g in self.grids(im)]
                for im in tqdm(images, what, disable=not progress)]

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

    def enroll_tokens(self, toks: list[list[np.ndarray]], shapes: list[tuple[int, ...]],
                      progress: bool = False) -> Calibration:
        """`enroll` from the good parts' `tokens()` and frame shapes (the evaluation
        encodes its images once for all reference counts)."""
        p = self.params
        self._check_count(len(toks))
        held_out = folds(len(toks), p.folds, p.seed)
        banks, borders, dists = [], [], []
        for k, scale in enumerate(self.scales):
            t = [tok[k] for tok in toks]
            bank, border, d = self._enroll_scale(scale, t, shapes, held_out, progress)
            banks.append(bank)
            borders.append(border)
            dists.append(d)
        # each scale's unit: the median held-out part score it gives alone
        units = [1.0] * len(self.scales)
        if len(self.scales) > 1:
            units = [float(np.median([self._part_score([d[i]], [s], [1.0], shapes[i])[0]
                                      for i in range(len(toks))]))
                     for d, s in zip(dists, self.scales, strict=True)]
        scores = np.array([self._part_score([d[i] for d in dists], self.scales, units,
                                            shapes[i])[0] for i in range(len(toks))])
        cal = threshold_for_rate(scores, self.target_rate)
        self.set_enrolment(banks, cal, borders, units)
        log.log(logging.INFO if cal.enough_parts else logging.WARNING,
                "%s; bank tokens per scale %s; border scale %s; units %s", cal.summary(),
                [len(b) for b in banks], [np.round(b, 3).tolist() for b in borders],
                np.round(units, 3).tolist())
        return cal

    def _enroll_scale(self, scale: Scale, toks: list[np.ndarray], shapes: list[tuple[int, ...]],
                      held_out: list[np.ndarray], progress: bool
                      ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """One scale's bank and border scale, and each good part's border-scaled token
        distances to a bank built without its fold."""
        p = self.params
        reduced, _ = self.stage_one(toks, progress)
        dists: list[np.ndarray] = [np.empty(0)] * len(toks)
        for k, held in enumerate(held_out):
            keep = np.setdiff1d(np.arange(len(toks)), held)
            nn = self._index(self.build_bank([reduced[i] for i in keep],
                                             total=sum(len(toks[i]) for i in keep)))
            for i in tqdm(held, f"calibrate fold {k + 1}", disable=not progress):
                dists[i] = nn.search(toks[i]).reshape(self._grid_shape(scale, shapes[i]))
        border = self._border_scale(dists) if p.border_norm else self._no_border_scale()
        bank = self.build_bank(reduced, progress, total=sum(len(t) for t in toks))
        return bank, border, [self._scaled(d, border) for d in dists]

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
                                 hnsw_m=p.hnsw_m, ef_search=p.ef_search, refine=p.refine,
                                 refine_ef=p.refine_ef)

    def set_enrolment(self, banks: list[np.ndarray], cal: Calibration,
                      border_scales: list[np.ndarray] | None = None,
                      units: list[float] | None = None) -> None:
        """Make the banks (one per scale), `cal`, the border scales and units the
        enrolment (search indexes rebuilt)."""
        n = len(self.scales)
        if len(banks) != n:
            raise ValueError(f"{len(banks)} banks for {n} scales")
        for k, scale in enumerate(self.scales):
            scale.bank = banks[k]
            scale.nn = self._index(banks[k])
            scale.border_scale = (self._no_border_scale() if border_scales is None
                                  else np.asarray(border_scales[k], np.float32))
            scale.unit = 1.0 if units is None else float(units[k])
        self._sha = None
        self.calibration = cal
        self.threshold = cal.threshold

    # --- detection -------------------------------------------------------------------
    def distances(self, grids: list[np.ndarray]) -> list[np.ndarray]:
        """Border-scaled distance of each token to its scale's bank, (h, w) per scale."""
        out = []
        for scale, g in zip(self.scales, grids, strict=True):
            if scale.nn is None or scale.border_scale is None:
                raise RuntimeError("unknown-defect branch used before enroll()")
            d = scale.nn.search(g.reshape(-1, g.shape[-1])).reshape(g.shape[:2])
            out.append(self._scaled(d, scale.border_scale))
        return out

    def _scaled(self, dist: np.ndarray, scale: np.ndarray) -> np.ndarray:
        if np.all(scale == 1.0):
            return dist
        return dist * scale[border_classes(*dist.shape, self.params.border_rings)]

    def part_score(self, dists: list[np.ndarray], shape: tuple[int, ...]
                   ) -> tuple[float, np.ndarray]:
        """The part's score (what the threshold is calibrated on) and its anomaly map, from
        its token distances at each scale and the frame's shape."""
        return self._part_score(dists, self.scales, [s.unit for s in self.scales], shape)

    def _part_score(self, dists: list[np.ndarray], scales: list[Scale], units: list[float],
                    shape: tuple[int, ...]) -> tuple[float, np.ndarray]:
        p = self.params
        amap = None
        for d, s, u in zip(dists, scales, units, strict=True):
            m = anomaly_map(d, shape, s.extractor.scale(shape), p.blur_sigma)
            amap = m / u if amap is None else amap + m / u
        assert amap is not None
        if p.image_score == "map_max":
            return float(amap.max()), amap
        return self.topk_score(dists, p.topk, units), amap

    def topk_score(self, dists: list[np.ndarray], k: int,
                   units: list[float] | None = None) -> float:
        """The scales' top-`k` mean distances, added in their units (the enrolled ones by
        default)."""
        units = [s.unit for s in self.scales] if units is None else units
        return float(sum(topk_mean(d, k) / u for d, u in zip(dists, units, strict=True)))

    def _grid_shape(self, scale: Scale, shape: tuple[int, ...]) -> tuple[int, int]:
        f = scale.extractor.scale(shape)
        H, W = (max(16, round(v * f)) for v in shape[:2]) if f != 1.0 else shape[:2]
        return -(-H // 8), -(-W // 8)

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        """Distance to the nearest good token, per pixel of `image` (the scales' sum, in
        their units; raw distances with one scale)."""
        return self.part_score(self.distances(self.grids(image)), image.shape)[1]

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_with_map(image)[0]

    def detect_with_map(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """The unknown regions and the anomaly map they came from (the map is what
        `confirm` checks the prompt classes' detections against)."""
        p = self.params
        score, amap = self.part_score(self.distances(self.grids(image)), image.shape)
        if p.image_score == "map_max":
            return regions(amap, self.threshold, self.at_threshold, p.low_ratio,
                           p.min_area_px, p.max_regions), amap
        if score < self.threshold:
            return [], amap
        # the part is anomalous; where: the region around the map's peak, at the same
        # relative level as the hysteresis of map_max, scored by the part's score
        found = regions(amap, float(amap.max()), self.at_threshold, p.low_ratio, 1, 1)
        part = float(to_score(score, self.threshold, self.at_threshold))
        return [replace(d, score=part) for d in found], amap

    def confirms(self, det: Detection, amap: np.ndarray) -> bool:
        """Whether the map reaches `confirm` x the threshold under the detection (its mask,
        else its box): somewhere it looks unlike every good part."""
        level = self.params.confirm * self.threshold
        if level <= 0:
            return True
        x, y, w, h = (int(round(v)) for v in det.bbox)
        x0, y0 = max(x, 0), max(y, 0)
        win = amap[y0:y + max(h, 1), x0:x + max(w, 1)]
        if win.size == 0:
            return False
        under = det.covers(x0, y0, x0 + win.shape[1], y0 + win.shape[0])
        return bool((win[under] if under.any() else win).max() >= level)

    # --- state -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        if any(s.bank is None for s in self.scales) or self.calibration is None:
            raise RuntimeError("unknown-defect branch has no enrolment to save")
        cal = self.calibration
        out = {
            "calibration": np.array([cal.threshold, cal.target_rate, cal.achieved_rate,
                                     cal.n_heldout, cal.score_max, cal.score_median],
                                    np.float64),
            "calibration_method": np.array(cal.method),
            "units": np.array([s.unit for s in self.scales], np.float64),
            "params_json": np.array(self.params.model_dump_json()),
        }
        for k, s in enumerate(self.scales):
            out[f"bank{k}"] = s.bank
            out[f"border_scale{k}"] = s.border_scale
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore `state()`; ValueError (changing nothing) for a state that does not fit."""
        self.set_enrolment(*self.parse_state(state))

    def parse_state(self, state: dict[str, np.ndarray]
                    ) -> tuple[list[np.ndarray], Calibration, list[np.ndarray], list[float]]:
        """Check a `state()` against these params without applying it."""
        n = len(self.scales)
        try:
            saved = json.loads(str(state["params_json"]))
            c = np.asarray(state["calibration"], np.float64)
            method = str(state["calibration_method"])
            units = np.asarray(state["units"], np.float64)
            banks = [np.ascontiguousarray(state[f"bank{k}"], np.float32) for k in range(n)]
            borders = [np.asarray(state[f"border_scale{k}"], np.float32) for k in range(n)]
        except KeyError as exc:
            raise ValueError(f"unknown-branch state lacks {exc}") from None
        if saved != json.loads(self.params.model_dump_json()):
            raise ValueError("unknown-branch state was made with other params")
        classes = border_class_count(self.params.border_rings)
        dim = self.params.features.dim
        if (c.shape != (6,) or units.shape != (n,) or not np.all(units > 0)
                or any(b.ndim != 2 or b.shape[1] != dim for b in banks)
                or any(b.shape != (classes,) for b in borders)):
            raise ValueError(f"unknown-branch state has banks {[b.shape for b in banks]}, "
                             f"calibration {c.shape}, border scales "
                             f"{[b.shape for b in borders]}, units {units.shape}")
        cal = Calibration(threshold=float(c[0]), target_rate=float(c[1]),
                          achieved_rate=float(c[2]), n_heldout=int(c[3]), method=method,
                          score_max=float(c[4]), score_median=float(c[5]))
        return banks, cal, borders, units.tolist()

    def sha256(self) -> str:
        """Encoder, code version, params and enrolment: equal inputs, equal hash.

        Computed once per enrolment (the bank is megabytes; results ask on every frame).
        """
        if self._sha is not None:
            return self._sha
        h = hashlib.sha256(VERSION.encode())
        h.update(self.extractor.encoder.sha256.encode())
        h.update(self.params.model_dump_json().encode())
        if self.calibration is not None:
            h.update(np.float64(self.threshold).tobytes())
            for s in self.scales:
                if s.bank is not None and s.border_scale is not None:
                    h.update(np.float64(s.unit).tobytes())
                    h.update(s.border_scale.tobytes())
                    h.update(s.bank.tobytes())
        self._sha = h.hexdigest()
        return self._sha
