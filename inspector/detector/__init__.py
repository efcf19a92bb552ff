"""Detectors behind one interface; `build_detector` maps a recipe's detector settings to one."""

from __future__ import annotations

from inspector.detector.base import Detection, Detector, PromptExample

__all__ = ["Detection", "Detector", "PromptExample", "build_detector"]


def build_detector(settings, unknown=None) -> Detector:
    """Create the (not yet enrolled) detector named by `settings` (recipe.DetectorSettings).

    With `unknown` (the recipe's UnknownRule) enabled, it is wrapped with the good-part
    unknown-defect branch (detector/with_unknown.py): `build_detector(r.detector, r.unknown)`.
    Raises ValueError naming the bad parameter when `settings.params` is invalid.
    """
    if unknown is not None and unknown.enabled:
        from inspector.detector.with_unknown import wrap_with_unknown

        return wrap_with_unknown(build_detector(settings), unknown)
    if settings.kind == "texture":
        from inspector.detector.texture import TextureDetector

        return TextureDetector(settings.params)
    if settings.kind == "prompt":
        from inspector.detector.prompt import PromptDetector

        return PromptDetector(settings.params)
    raise ValueError(f"unknown detector kind {settings.kind!r}")
