"""Camera calibration: make the pixels honest before the detector sees them.

`inspector calibrate` measures, per camera, from reference images:

* intrinsics (`intrinsics.py`): camera matrix, lens distortion and reprojection error
  from checkerboard or ChArUco views (OpenCV);
* flat field (`flatfield.py`): dark offset and per-pixel gain from dark and white frames;
* scale (`scale.py`): millimetres per pixel, with its uncertainty, from a target of
  known size lying in the part plane.

The results live in one YAML file per camera (`store.py`, per-pixel arrays in an .npz
beside it). At run time `apply.Corrector`, built once per camera, applies flat field,
undistortion (precomputed maps) and the ROI crop to every frame, on the GPU when CUDA
is present (`cuda_kernel.py`), and gives the pipeline the calibrated mm per pixel.
`render.py` renders targets through a known camera model, for tests and examples.
"""

from inspector.calibration.inputs import CalibrationError
from inspector.calibration.store import CameraCalibration, load_calibration

__all__ = ["CalibrationError", "CameraCalibration", "load_calibration"]
