"""Detectors behind one interface; `build_detector` maps a recipe's detector settings to one."""

from __future__ import annotations

from inspector.detector.base import Detection, Detector, PromptExample

__all__ = ["Detection", "Detector", "PromptExample", "build_detector"]


def build_detector(settings) -> Detector:
    """Create the (not yet enrolled) detector named by `settings` (recipe.DetectorSettings).

    Raises ValueError naming the bad parameter when `settings.params` is invalid.
    """
    if settings.kind == "texture":
        from inspector.detector.texture import TextureDetector

        return TextureDetector(settings.params)
    raise ValueError(f"unknown detector kind {settings.kind!r}")
