"""Spectral engine: direction-invariant radial FFT profiles of regions of interest.

Used by the detector's frequency branch and the spectral check of candidate defects.
`radial_profiles` is the entry point; `reference.radial_profiles_reference` is the
definition (choices documented in `spec`); `cpu` is the numba/scipy fast path and
`cuda_kernel` the fused numba.cuda kernel, picked automatically on NVIDIA hardware.
"""

from inspector.inference.spectral.launcher import cuda_available, pick_backend, radial_profiles
from inspector.inference.spectral.reference import radial_profiles_reference
from inspector.inference.spectral.spec import SpectralInputError, grid_boxes, tables

__all__ = [
    "SpectralInputError",
    "cuda_available",
    "grid_boxes",
    "pick_backend",
    "radial_profiles",
    "radial_profiles_reference",
    "tables",
]
