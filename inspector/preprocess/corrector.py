"""Apply a camera's calibration to every frame: flat field, undistortion, ROI crop.

Built once per camera at service start (`Corrector.from_file`): the flat-field
coefficients are loaded and the undistortion maps computed once
(cv2.initUndistortRectifyMap, with the raw camera matrix as the new one: the calibrated
frame has the raw size and central scale). Per ROI, also once (cached), the maps are
cut to the ROI and shifted to the raw rectangle they read, so a frame costs only the
work for its ROI. The maps stay float32: with OpenCV 5 here, remap with them measured
faster than with the fixed-point (CV_16SC2) form (scripts/bench_calibration.py):

    raw rect --flat field (numba, one pass)--> 8-bit --cv2.remap (bilinear)--> ROI

With CUDA present the same three steps run as one fused kernel on the GPU
(`cuda_kernel.py`, frame used in place when it is already on the device). Frames must
have the size the calibration was made at; a frame that does not is an error, which
the pipeline turns into a fail-safe NG result.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from inspector.calibration.flatfield import FlatField
from inspector.calibration.store import CameraCalibration, load_calibration
from inspector.preprocess.frame import Preprocessed, to_mono8

log = logging.getLogger(__name__)
Backend = Literal["auto", "cpu", "cuda"]
ROI_PLANS = 8  # ROIs whose maps are kept (recipes switch, each may have its own ROI)


def gpu_available() -> bool:
    """True only with numba-cuda, a driver and a real GPU (never the simulator)."""
    try:
        from numba.core import config

        if config.ENABLE_CUDASIM or config.DISABLE_CUDA:
            return False
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no numba-cuda, no driver: no GPU path
        return False


@dataclass(frozen=True)
class RoiPlan:
    """What a frame needs for one ROI: where it lands, what it reads, the cut maps."""

    roi: tuple[int, int, int, int]  # x, y, w, h in the calibrated frame, clipped
    src: tuple[int, int, int, int]  # x, y, w, h of the raw frame read
    map_x: np.ndarray | None  # float32 maps relative to `src` (None: no undistortion)
    map_y: np.ndarray | None


def clip_roi(roi: tuple[int, int, int, int] | None, w: int, h: int
             ) -> tuple[int, int, int, int]:
    """The ROI clipped to a w x h frame, as preprocess() clips it."""
    if roi is None:
        return 0, 0, w, h
    x, y, rw, rh = roi
    x0, y0 = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
    return x0, y0, min(x0 + rw, w) - x0, min(y0 + rh, h) - y0


class Corrector:
    """One camera's corrections; call it with a raw frame and the recipe's ROI."""

    def __init__(
        self,
        size: tuple[int, int],
        flat: FlatField | None = None,
        lens: tuple[np.ndarray, np.ndarray] | None = None,
        mm_per_px: float | None = None,
        camera: str = "",
        source: str = "",
        backend: Backend = "auto",
    ) -> None:
        """`size` (w, h) of the raw frames, `lens` (camera matrix, distortion)."""
        self.camera = camera
        self.source = source or camera
        self.width, self.height = size
        self.flat = flat
        if flat is not None:
            flat.warm_up()
        self.mapx = self.mapy = None
        if lens is not None:
            K, dist = lens
            self.mapx, self.mapy = cv2.initUndistortRectifyMap(
                K, dist, None, K, (self.width, self.height), cv2.CV_32FC1)
        self.mm_per_px = mm_per_px
        self._plans: OrderedDict[tuple | None, RoiPlan] = OrderedDict()
        self.backend = "cuda" if backend == "cuda" or (
            backend == "auto" and gpu_available()) else "cpu"
        self._device = None
        if self.backend == "cuda":
            from inspector.preprocess.cuda_kernel import DeviceCorrector

            self._device = DeviceCorrector(
                None if flat is None else flat.a, None if flat is None else flat.b,
                self.mapx, self.mapy)

    @classmethod
    def from_calibration(cls, cal: CameraCalibration, backend: Backend = "auto") -> Corrector:
        flat = None
        if cal.flatfield is not None:
            dark, gain = cal.flatfield_arrays()
            flat = FlatField.from_maps(dark, gain, cal.flatfield.dtype)
        lens = None if cal.intrinsics is None else (cal.intrinsics.K, cal.intrinsics.dist)
        mm = cal.scale.mm_per_px if cal.scale is not None else None
        out = cls(tuple(cal.image_size), flat, lens, mm, cal.camera,
                  str(cal.path) if cal.path else cal.camera, backend)
        log.info("camera %s: calibration %s (%s) on %s", cal.camera, out.source,
                 ", ".join(cal.sections) or "empty", out.backend)
        return out

    @classmethod
    def from_file(cls, path: Path, backend: Backend = "auto") -> Corrector:
        return cls.from_calibration(load_calibration(path), backend)

    # -- per ROI, once -------------------------------------------------------------
    def plan(self, roi: tuple[int, int, int, int] | None) -> RoiPlan:
        key = None if roi is None else tuple(roi)
        got = self._plans.get(key)
        if got is not None:
            self._plans.move_to_end(key)
            return got
        x, y, w, h = clip_roi(roi, self.width, self.height)
        if self.mapx is None:
            plan = RoiPlan((x, y, w, h), (x, y, w, h), None, None)
        else:
            mx = self.mapx[y:y + h, x:x + w]
            my = self.mapy[y:y + h, x:x + w]
            sx0 = int(np.clip(np.floor(mx.min()), 0, self.width - 1))
            sy0 = int(np.clip(np.floor(my.min()), 0, self.height - 1))
            sx1 = int(np.clip(np.floor(mx.max()) + 1, sx0, self.width - 1))
            sy1 = int(np.clip(np.floor(my.max()) + 1, sy0, self.height - 1))
            plan = RoiPlan((x, y, w, h), (sx0, sy0, sx1 - sx0 + 1, sy1 - sy0 + 1),
                           mx - np.float32(sx0), my - np.float32(sy0))
        self._plans[key] = plan
        while len(self._plans) > ROI_PLANS:
            self._plans.popitem(last=False)
        return plan

    # -- per frame -----------------------------------------------------------------
    def _check_size(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        if (w, h) != (self.width, self.height) or len(shape) != 2:
            raise ValueError(f"calibration {self.source} is for {self.width}x{self.height} "
                             f"frames, camera {self.camera} delivered {w}x{h}")

    def _mono(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            code = cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
            image = cv2.cvtColor(image, code)
        self._check_size(image.shape)
        return image

    def _read(self, mono: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """8-bit, flat-field corrected `rect` of the raw frame."""
        if self.flat is not None:
            return self.flat.apply(mono, rect)
        x, y, w, h = rect
        return to_mono8(mono[y:y + h, x:x + w])

    def correct(self, image: np.ndarray, roi: tuple[int, int, int, int] | None,
                backend: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """(corrected 8-bit ROI, its offset in the calibrated frame)."""
        plan = self.plan(roi)
        if (backend or self.backend) == "cuda" and self._device is not None:
            if hasattr(image, "__cuda_array_interface__"):  # on the device: used in place
                self._check_size(tuple(image.shape))
            else:
                image = self._mono(image)
            if self.flat is not None and np.dtype(image.dtype) != self.flat.dtype:
                raise ValueError(f"flat field of {self.source} was measured on "
                                 f"{self.flat.dtype} frames, got {image.dtype}")
            return self._device.run(image, plan.roi), plan.roi[:2]
        mono = self._mono(image)
        part = self._read(mono, plan.src)
        if plan.map_x is None:
            return part, plan.roi[:2]
        out = cv2.remap(part, plan.map_x, plan.map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        return out, plan.roi[:2]

    def __call__(self, image: np.ndarray, roi: tuple[int, int, int, int] | None
                 ) -> Preprocessed:
        out, offset = self.correct(image, roi)
        return Preprocessed(out, offset, self.mm_per_px,
                            self.source if self.mm_per_px is not None else None)

    def full_frame(self, image: np.ndarray) -> np.ndarray:
        """The whole corrected frame (overlays); CPU, safe beside the inference thread."""
        mono = self._mono(image)
        part = self._read(mono, (0, 0, self.width, self.height))
        if self.mapx is None:
            return part
        return cv2.remap(part, self.mapx, self.mapy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
