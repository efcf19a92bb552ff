"""Token features of the unknown-defect branch: one vector per stride-8 position.

The encoder is the detector's own backbone, EfficientNet-Lite0 with ImageNet weights
(`inspector.training.backbone.Lite0Features`), frozen and exported once to ONNX by
`scripts/export_unknown_encoder.py` (engines/lite0-features.onnx), so a line PC runs it
with ONNX Runtime and needs no torch. A token is the stride-8 feature (40 channels)
concatenated with the stride-16 feature (112 channels) upsampled to stride 8, then
optionally averaged over its 3 x 3 neighbourhood (PatchCore's local aggregation: a
token sees a little context, so grain is judged as texture, not as single pixels),
optionally followed by the radial FFT profile of the 32 x 32 patch around it
(inspector.inference.spectral), which describes fine periodic texture that ImageNet features
see poorly. With `normalize`, each frame's grey levels are standardised first, for
lines whose exposure drifts from part to part.

Frames are resized so that their shorter side is `FeatureParams.short_side` (None:
native scale), then by `zoom` (the branch's coarse scale: half the size), given a
mirrored margin of `pad` pixels (so that tokens at the frame's border and corners see
image content rather than the network's zero padding, which otherwise makes them the
least typical tokens of every part) and padded to a multiple
of 16; the tokens of the margin are cut away again, so any frame size works.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from inspector.core.assets import model_path
from inspector.core.strict import StrictModel

DEFAULT_ONNX = model_path("lite0-features.onnx", must_exist=False)
STRIDE = 8
S8_CHANNELS, S16_CHANNELS = 40, 112
NORM_MEAN, NORM_STD = 100 / 255, 25 / 255  # grey levels of a normalised frame


class FeatureParams(StrictModel):
    """How frames become tokens; part of the recipe's `detector.params.unknown`."""

    short_side: Annotated[int, Field(ge=64, le=2048)] | None = None  # None: native scale
    # a further resize factor on top of `short_side` (the branch's coarse scale uses it)
    zoom: Annotated[float, Field(ge=0.05, le=4)] = 1.0
    layers: Literal["s8", "s16", "s8+s16"] = "s8+s16"
    pool: Annotated[int, Field(ge=1, le=7)] = 3  # local average over pool x pool tokens
    pad: Annotated[int, Field(ge=0, le=64, multiple_of=8)] = 16  # mirrored margin, pixels
    normalize: bool = False  # standardise each frame's grey levels (mean, spread) first
    spectra: bool = False  # append radial FFT profiles of 32 x 32 patches
    spectra_weight: Annotated[float, Field(gt=0)] = 4.0  # their scale against CNN channels
    # frames larger than this (px, after padding) are encoded in tiles of this size, each
    # with `tile_context` px of the frame around it: the encoder's working memory then
    # depends on the tile, not on the frame (None: the whole frame in one pass)
    tile: Annotated[int, Field(ge=128, le=4096, multiple_of=16)] | None = 768
    tile_context: Annotated[int, Field(ge=16, le=256, multiple_of=16)] = 64

    @model_validator(mode="after")
    def _tile_has_a_core(self) -> FeatureParams:
        if self.tile is not None and self.tile - 2 * self.tile_context < 64:
            raise ValueError(f"tile {self.tile} leaves no core inside 2 x tile_context "
                             f"{self.tile_context}: make tile at least "
                             f"{2 * self.tile_context + 64}")
        return self

    @property
    def dim(self) -> int:
        d = {"s8": S8_CHANNELS, "s16": S16_CHANNELS, "s8+s16": S8_CHANNELS + S16_CHANNELS}
        return d[self.layers] + (16 if self.spectra else 0)


def pin_path(path: Path) -> Path:
    """The encoder's sha256 pin beside it, in `sha256sum` format (`sha256sum -c` reads it)."""
    return path.with_name(path.name + ".sha256")


def check_pin(path: Path, sha256: str) -> None:
    """Refuse an encoder that is not the one pinned beside it (truncated or replaced)."""
    pin = pin_path(path)
    try:
        want = pin.read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        raise ValueError(f"{path}: not pinned ({pin} missing or unreadable); re-export it "
                         "with scripts/export_unknown_encoder.py") from None
    if want != sha256:
        raise ValueError(f"{path}: sha256 {sha256[:12]}..., {pin.name} pins {want[:12]}... "
                         "(truncated or replaced)")


class Encoder:
    """The frozen Lite0 feature graph in ONNX Runtime: (B,1,H,W) [0,1] -> f8, f16."""

    def __init__(self, path: Path = DEFAULT_ONNX, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: unknown-branch encoder missing; create it with "
                "`.venv/bin/python scripts/export_unknown_encoder.py`")
        data = path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        check_pin(path, self.sha256)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        # Workers that spin after a run take the core from the threads beside it (the
        # prompt detector, the matcher's correlations, faiss): without spinning the demo
        # service reached the reject gate in 89-98 ms instead of 121-125, at 35 % CPU
        # instead of 48 % (`inspector bench --rate 2`, BENCHMARKS.md)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(data, opts, providers=providers)
        self._lock = threading.Lock()  # one run at a time keeps the thread pool predictable

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            f8, f16 = self.session.run(None, {"image": batch})
        return f8, f16


@lru_cache(maxsize=2)
def shared_encoder(path: str = str(DEFAULT_ONNX)) -> Encoder:
    """One session per model file for the whole process (recipes share the encoder)."""
    return Encoder(Path(path))


def _mono01(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32)


def token_spans(boxes: np.ndarray, margin: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token index ranges [x0, x1) x [y0, y1) of the tokens that overlap each box (n, 4)
    x y w h (grid pixels), grown by `margin` tokens; not clipped to a grid."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0 = np.floor(b[:, 0] / STRIDE).astype(int) - margin
    y0 = np.floor(b[:, 1] / STRIDE).astype(int) - margin
    x1 = np.ceil((b[:, 0] + b[:, 2]) / STRIDE).astype(int) + margin
    y1 = np.ceil((b[:, 1] + b[:, 3]) / STRIDE).astype(int) + margin
    return x0, y0, x1, y1


class RecentGrids:
    """Token grids of recent frames, by frame content and extractor, until shared.

    The first caller of a key computes it; a caller in another thread asking for the
    same key meanwhile waits for that result instead of encoding the frame again, and
    then drops it (a frame has two consumers: a matcher and the unknown branch). Small on
    purpose: a 2048 px frame's grid is about 40 MB, and a recipe with one consumer keeps
    at most `size` grids it will not ask for again.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, Future[np.ndarray]] = OrderedDict()
        self.computed = 0  # grids encoded (the rest were shared)

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            fut = self._items.get(key)
            owner = fut is None
            if fut is None:
                fut = self._items[key] = Future()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                del self._items[key]  # its second consumer: nobody else will ask
        if owner:
            try:
                fut.set_result(compute())
                with self._lock:
                    self.computed += 1
            except BaseException as exc:
                fut.set_exception(exc)
                with self._lock:  # a failed frame is not remembered
                    if self._items.get(key) is fut:
                        del self._items[key]
        return fut.result()


RECENT_GRIDS = RecentGrids()


class TokenExtractor:
    """Image -> (h, w, C) token grid at stride 8 of the (resized) image."""

    def __init__(self, params: FeatureParams | None = None, encoder: Encoder | None = None,
                 share: bool = True):
        """`share`: offer grids to other extractors of the same frame (RecentGrids); an
        extractor nobody else shares with (the branch's coarse scale) keeps out of the
        one-grid cache so as not to evict a grid that is waiting for its second consumer."""
        self.params = params or FeatureParams()
        self.encoder = encoder or shared_encoder()
        self.share = share
        # what makes two extractors' grids of a frame equal (params are set once, here)
        self._same = (self.encoder.sha256, self.params.model_dump_json())

    def scale(self, shape: tuple[int, ...]) -> float:
        """Resize factor applied to a frame of `shape` before encoding."""
        s = self.params.short_side
        return (1.0 if s is None else s / min(shape[:2])) * self.params.zoom

    def grid(self, image: np.ndarray) -> np.ndarray:
        """Token grid (h, w, C) float32 with h = ceil(H'/8), w = ceil(W'/8) of the resized
        frame H' x W'; token (i, j) covers pixels [8i, 8i+8) x [8j, 8j+8) there.

        Read-only and shared: extractors with the same encoder and params (a recipe's
        matcher and its unknown branch, in two threads) encode a frame once between them.
        """
        if not self.share:
            return self._grid(image)
        key = (*self._same, image.shape, image.dtype.str,
               hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
        return RECENT_GRIDS.get(key, lambda: self._grid(image))

    def _grid(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        img = _mono01(image)
        f = self.scale(img.shape)
        if f != 1.0:
            h, w = (max(16, round(v * f)) for v in img.shape[:2])
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if f < 1
                             else cv2.INTER_LINEAR)
        if p.normalize:  # exposure changes between parts then do not look like defects
            img = np.clip((img - img.mean()) / (img.std() + 1e-6) * NORM_STD + NORM_MEAN, 0, 1)
        H, W = img.shape
        m = p.pad  # mirrored margin: border tokens see content, not the CNN's zero padding
        ph, pw = m + (-(H + 2 * m) % 16), m + (-(W + 2 * m) % 16)
        padded = cv2.copyMakeBorder(img, m, ph, m, pw, cv2.BORDER_REFLECT_101)
        f8, f16 = self._encode(padded)
        h8, w8 = f8.shape[2:]
        t0 = m // STRIDE
        h, w = -(-H // STRIDE), -(-W // STRIDE)  # tokens of the frame, not of the padding
        parts = []  # OpenCV filters take at most 128 channels: pool each layer on its own
        if p.layers in ("s8", "s8+s16"):
            parts.append(f8[0].transpose(1, 2, 0))
        if p.layers in ("s16", "s8+s16"):
            parts.append(cv2.resize(np.ascontiguousarray(f16[0].transpose(1, 2, 0)), (w8, h8),
                                    interpolation=cv2.INTER_LINEAR))
        if p.pool > 1:  # pool before cutting, so border tokens pool over the margin too
            parts = [cv2.blur(np.ascontiguousarray(a), (p.pool, p.pool),
                              borderType=cv2.BORDER_REFLECT) for a in parts]
        parts = [np.ascontiguousarray(a[t0:t0 + h, t0:t0 + w]) for a in parts]
        tok = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
        if p.spectra:
            tok = np.concatenate([tok, p.spectra_weight * spectra_grid(img, tok.shape[:2])], 2)
        out = np.ascontiguousarray(tok, dtype=np.float32)
        out.flags.writeable = False  # shared between the extractors of a frame
        return out

    def _encode(self, padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoder outputs of a frame padded to multiples of 16, whole or tile by tile.

        A tile's outputs are kept only for its core; its context (mirrored at the frame's
        edge) is what the core's receptive field sees beyond it. Differences to the whole
        frame come from context beyond `tile_context` px: a median 1.2 % on 1024 px frames
        with the default tiles (tests/unit/inference/test_unknown.py checks smaller ones)."""
        p = self.params
        hp, wp = padded.shape
        if p.tile is None or max(hp, wp) <= p.tile:
            return self.encoder(np.ascontiguousarray(padded[None, None]))
        c, t = p.tile_context, p.tile - 2 * p.tile_context
        big = cv2.copyMakeBorder(padded, c, c, c, c, cv2.BORDER_REFLECT_101)
        f8 = f16 = None
        for y0 in range(0, hp, t):
            for x0 in range(0, wp, t):
                y1, x1 = min(y0 + t, hp), min(x0 + t, wp)
                a8, a16 = self.encoder(np.ascontiguousarray(
                    big[None, None, y0:y1 + 2 * c, x0:x1 + 2 * c]))
                if f8 is None or f16 is None:
                    f8 = np.empty((1, a8.shape[1], hp // 8, wp // 8), np.float32)
                    f16 = np.empty((1, a16.shape[1], hp // 16, wp // 16), np.float32)
                for dst, src, k in ((f8, a8, 8), (f16, a16, 16)):
                    dst[0, :, y0 // k:y1 // k, x0 // k:x1 // k] = \
                        src[0, :, c // k:c // k + (y1 - y0) // k, c // k:c // k + (x1 - x0) // k]
        assert f8 is not None and f16 is not None
        return f8, f16


def spectra_grid(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Radial FFT profile (16 rings) of the 32 x 32 patch centred on every token."""
    from inspector.inference.spectral import radial_profiles

    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    boxes = np.stack([xs.ravel() * STRIDE - 12.0, ys.ravel() * STRIDE - 12.0,
                      np.full(h * w, 32.0), np.full(h * w, 32.0)], 1).astype(np.float32)
    prof = radial_profiles(np.ascontiguousarray(img, np.float32), boxes, size=32)
    return prof.reshape(h, w, -1)
