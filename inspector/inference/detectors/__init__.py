"""Detectors behind one interface; `build_detector` maps a recipe's detector settings to one
through the kind registry (registry.py)."""

from __future__ import annotations

from inspector.inference.detectors.base import Detection, Detector, PromptExample
from inspector.inference.detectors.registry import detector_class

__all__ = ["Detection", "Detector", "PromptExample", "build_detector"]


def build_detector(settings, unknown=None, thresholds: dict[str, float] | None = None
                   ) -> Detector:
    """Create the (not yet enrolled) detector named by `settings` (recipe.DetectorSettings).

    With `unknown` (the recipe's UnknownRule) enabled, it is wrapped with the good-part
    unknown-defect branch (detector/with_unknown.py): `build_detector(r.detector, r.unknown)`.
    `thresholds` (class name -> the recipe's score threshold): only a detection the recipe
    would count may explain away an unknown region (recipe_cache.detector_for passes them).
    Raises ValueError naming the bad parameter when `settings.params` is invalid.
    """
    if unknown is not None and unknown.enabled:
        from inspector.inference.detectors.with_unknown import wrap_with_unknown

        return wrap_with_unknown(build_detector(settings), unknown, thresholds)
    if settings.kind is None:
        raise ValueError("detector.kind is not resolved: load the recipe with load_recipe")
    return detector_class(settings.kind)(settings.params)
