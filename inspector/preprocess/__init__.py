"""Per-frame preprocessing: ROI, mono conversion and the calibration corrector (flat field,
lens undistortion, CPU or CUDA) applied to every frame. The calibration package
measures; this one applies.
"""
