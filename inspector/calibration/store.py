"""The calibration file of one camera: `calibration/<camera>.yaml`, arrays in an .npz beside it.

The YAML holds identity (camera name, serial), the raw frame size, and one section per
calibration step with its date, inputs and quality figures: `intrinsics` (camera
matrix, distortion, reprojection error), `flatfield` (names the .npz with the dark and
gain maps and its sha256, plus uniformity before and after), `scale` (mm per pixel
and its uncertainty). Each `inspector calibrate` step replaces its own section and keeps
the others. Files are data: YAML via safe_load, validated with file:line errors, arrays
via np.load(allow_pickle=False); writes go to a temporary file first and are renamed,
so a failed step leaves the previous calibration intact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import Field, field_validator

from inspector.calibration.inputs import CalibrationError
from inspector.calibration.targets import TargetSpec
from inspector.core.atomic import write_bytes_atomic as atomic_write
from inspector.core.hashing import file_sha256 as sha256_file
from inspector.core.strict import StrictModel
from inspector.core.validation import InvalidFile, validate_file

SCHEMA = "inspector.calibration/1"
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def now_iso() -> str:
    """UTC time stamp for the `date` of a calibration step."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


class Intrinsics(StrictModel):
    """Pinhole camera matrix and Brown-Conrady distortion (OpenCV's model)."""

    date: str
    target: TargetSpec
    images: list[str]  # file names of the views used
    camera_matrix: list[list[float]]  # [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels
    dist_coeffs: list[float]  # k1, k2, p1, p2, k3
    rms_px: NonNegative  # reprojection error over all corners
    max_view_rms_px: NonNegative  # worst view
    std: dict[str, NonNegative] = Field(default_factory=dict)  # 1-sigma of fx, fy, cx, ...
    corners: int = 0  # corners used in all
    coverage: Annotated[float, Field(ge=0, le=1)] = 0.0  # share of 10x10 cells with corners

    @field_validator("camera_matrix")
    @classmethod
    def _matrix(cls, v: list[list[float]]) -> list[list[float]]:
        m = np.asarray(v, dtype=float)
        if m.shape != (3, 3) or m[0, 0] <= 0 or m[1, 1] <= 0 or tuple(m[2]) != (0, 0, 1):
            raise ValueError("must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
        return v

    @field_validator("dist_coeffs")
    @classmethod
    def _dist(cls, v: list[float]) -> list[float]:
        if len(v) not in (4, 5, 8, 12, 14):
            raise ValueError("must have 4, 5, 8, 12 or 14 coefficients (OpenCV's model)")
        return v

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the math name
        return np.asarray(self.camera_matrix, dtype=np.float64)

    @property
    def dist(self) -> np.ndarray:
        return np.asarray(self.dist_coeffs, dtype=np.float64)


class FlatFieldInfo(StrictModel):
    """Dark offset and per-pixel gain, stored in `file` (an .npz beside the YAML)."""

    date: str
    file: str  # relative to the YAML file
    sha256: str
    dtype: Literal["uint8", "uint16"]  # pixel type of the frames it was measured on
    dark_images: list[str]
    white_images: list[str]
    white_level: Positive  # mean white minus dark, grey levels: the corrected white
    smooth_px: NonNegative = 0.0  # Gaussian sigma applied to the gain (0: per pixel)
    nonuniformity_before: NonNegative  # (max - min) / mean of 16x16-block means, white
    nonuniformity_after: NonNegative | None  # the same on a held-out white frame, corrected
    gain_min: Positive
    gain_max: Positive
    bad_pixels: Annotated[int, Field(ge=0)] = 0  # white <= dark: left uncorrected (gain 1)


class ScaleInfo(StrictModel):
    """Millimetres per pixel of the calibrated (undistorted) frame in the part plane."""

    date: str
    target: TargetSpec
    images: list[str]
    mm_per_px: Positive
    uncertainty_mm_per_px: NonNegative  # 1 sigma
    anisotropy: float  # x scale / y scale - 1
    fit_rms_px: NonNegative  # corner residual of the affine fit
    corners: Annotated[int, Field(ge=1)]
    undistorted: bool  # measured through the intrinsics of this file


class CameraCalibration(StrictModel):
    """Everything known about one camera's optics; each section is optional."""

    schema_id: Literal["inspector.calibration/1"] = Field(SCHEMA, alias="schema")
    camera: Name
    serial: str | None = None
    image_size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]]  # w, h
    intrinsics: Intrinsics | None = None
    flatfield: FlatFieldInfo | None = None
    scale: ScaleInfo | None = None

    path: Path | None = Field(default=None, exclude=True)

    model_config = {"populate_by_name": True}

    @property
    def sections(self) -> list[str]:
        return [s for s in ("intrinsics", "flatfield", "scale") if getattr(self, s)]

    def flatfield_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(dark, gain) float32 (H, W), checked against the file's sha256 and size."""
        ff = self.flatfield
        if ff is None or self.path is None:
            raise CalibrationError(f"{self.path}: no flat field in this calibration")
        file = self.path.parent / ff.file
        if not file.is_file():
            raise CalibrationError(f"{self.path}: flatfield.file: not found: {file}")
        if sha256_file(file) != ff.sha256:
            raise CalibrationError(f"{file}: sha256 differs from flatfield.sha256 in "
                                   f"{self.path} (file changed or replaced)")
        with np.load(file, allow_pickle=False) as npz:
            try:
                dark, gain = npz["dark"], npz["gain"]
            except KeyError as exc:
                raise CalibrationError(f"{file}: missing array {exc}") from exc
        w, h = self.image_size
        for name, a in (("dark", dark), ("gain", gain)):
            if a.shape != (h, w) or a.dtype != np.float32:
                raise CalibrationError(f"{file}: {name} must be float32 {h}x{w}, got "
                                       f"{a.dtype} {a.shape}")
        return dark, gain




def load_calibration(path: Path) -> CameraCalibration:
    """Validate a calibration YAML; raises InvalidFile with file:line: field messages."""
    path = Path(path)
    cal = validate_file(path, CameraCalibration)
    cal.path = path
    if cal.flatfield is not None and not (path.parent / cal.flatfield.file).is_file():
        raise InvalidFile(path, [f"{path}: flatfield.file: not found: "
                                 f"{path.parent / cal.flatfield.file}"])
    return cal


def default_path(folder: Path, camera: str) -> Path:
    """Where a camera's calibration file lives by default: `<folder>/<camera>.yaml`."""
    return Path(folder) / f"{camera}.yaml"


def existing_or_new(path: Path, camera: str, serial: str | None,
                    size: tuple[int, int]) -> CameraCalibration:
    """The calibration at `path` to add a section to, or a new one; sizes must agree."""
    path = Path(path)
    if path.exists():
        cal = load_calibration(path)
        if cal.camera != camera:
            raise CalibrationError(f"{path}: belongs to camera {cal.camera!r}, not {camera!r}")
        if tuple(cal.image_size) != tuple(size):
            raise CalibrationError(
                f"{path}: calibrated for {cal.image_size[0]}x{cal.image_size[1]} frames, the "
                f"new images are {size[0]}x{size[1]}: calibrate into a new file")
        if serial is not None and cal.serial is not None and serial != cal.serial:
            raise CalibrationError(f"{path}: camera serial {cal.serial!r} differs from "
                                   f"{serial!r}")
        if serial is not None:
            cal.serial = serial
        return cal
    return CameraCalibration(camera=camera, serial=serial, image_size=size)


def save_calibration(cal: CameraCalibration, path: Path,
                     arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write the YAML (and, with `arrays`, the flat-field .npz it names) atomically.

    The .npz is named after its content hash, so the previous YAML stays consistent with
    its own .npz until the new YAML replaces it; the old .npz is removed after that.
    """
    path = Path(path)
    old_npz = None
    if arrays is not None:
        if cal.flatfield is None:
            raise ValueError("arrays are the flat field's: set cal.flatfield first")
        if path.exists():
            try:
                prev = load_calibration(path)
                if prev.flatfield is not None:
                    old_npz = path.parent / prev.flatfield.file
            except InvalidFile:
                pass
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        cal.flatfield.sha256 = hashlib.sha256(data).hexdigest()
        cal.flatfield.file = f"{path.stem}.flatfield-{cal.flatfield.sha256[:12]}.npz"
        atomic_write(path.parent / cal.flatfield.file, data)
    doc = cal.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = (f"# Calibration of camera {cal.camera}: written by `inspector calibrate`.\n"
            f"# Sections: {', '.join(cal.sections) or 'none'}. Pixel sizes are of the "
            "calibrated (undistorted) frame.\n")
    text += yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    atomic_write(path, text.encode())
    cal.path = path
    if old_npz is not None and old_npz.name != cal.flatfield.file:
        old_npz.unlink(missing_ok=True)
    return path
