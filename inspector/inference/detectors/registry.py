"""The detector kinds a recipe may name, in one place: each kind's code and its typed
`detector.params` model.

Why a registry: the recipe model takes its `detector.kind` choices from here, `load_recipe`
validates `detector.params` against the kind's own model (so `inspector validate` rejects
`min_scor: 0.9` with file, line and field, before anything is built), and `build_detector`
creates the detector from the same entry. Adding a kind is one line here plus its module;
modules are imported only when their kind is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from inspector.core.strict import StrictModel


@dataclass(frozen=True)
class DetectorKind:
    """Where a detector kind's code lives: its module, detector class and params model."""

    module: str  # where the detector and its params model live
    detector: str  # class name of the Detector
    params: str  # class name of its pydantic params model


KINDS: dict[str, DetectorKind] = {
    "texture": DetectorKind("inspector.inference.detectors.texture", "TextureDetector",
                            "TextureParams"),
    "prompt": DetectorKind("inspector.inference.detectors.prompt", "PromptDetector",
                           "PromptParams"),
    "match": DetectorKind("inspector.inference.detectors.match", "MatchDetector",
                          "MatchParams"),
    "consensus": DetectorKind("inspector.inference.detectors.consensus", "ConsensusDetector",
                              "ConsensusParams"),
    "select": DetectorKind("inspector.inference.detectors.select", "SelectDetector",
                           "SelectParams"),
}
# the good-part branch's params (`unknown.params` of a recipe): not a kind, same checks
UNKNOWN_PARAMS = ("inspector.inference.unknown.branch", "UnknownParams")


def _entry(kind: str) -> DetectorKind:
    if kind not in KINDS:
        raise ValueError(f"unknown detector kind {kind!r} (one of: {', '.join(KINDS)})")
    return KINDS[kind]


def params_model(kind: str) -> type[BaseModel]:
    """The pydantic model of `detector.params` for `kind`."""
    e = _entry(kind)
    return getattr(importlib.import_module(e.module), e.params)


def unknown_params_model() -> type[BaseModel]:
    """The pydantic model of a recipe's `unknown.params`."""
    return getattr(importlib.import_module(UNKNOWN_PARAMS[0]), UNKNOWN_PARAMS[1])


def detector_class(kind: str) -> type:
    """The Detector class of `kind`."""
    e = _entry(kind)
    return getattr(importlib.import_module(e.module), e.detector)


class NestedDetector(StrictModel):
    """A detector inside another's params (a consensus member, a select candidate): its
    kind and its own `params`, checked as that kind's. Subclasses narrow `kind`."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _valid(cls, v: dict[str, Any], info) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is not None:
            try:
                params_model(kind).parse(v)  # type: ignore[attr-defined]
            except ValueError as exc:  # "detector.params.<field>: why", said from here
                raise ValueError(str(exc).removeprefix("detector.params.")) from None
        return v
