"""One registry per seam: the kinds a config may name are exactly the kinds the code
builds (sources, detectors, inference runtimes)."""

from __future__ import annotations

from typing import get_args

import pytest

from inspector.acquisition import SOURCE_KINDS, build_source
from inspector.config.sources import SourceConfig
from inspector.inference.detectors import registry
from inspector.inference.detectors.prompt import PromptParams
from inspector.inference.runtimes import RUNTIMES, BackendError, open_backend
from inspector.recipes.recipe import DetectorSettings


def _literal(model, field: str) -> set[str]:
    ann = model.model_fields[field].annotation
    return {a for arg in get_args(ann) or (ann,) for a in (get_args(arg) or (arg,))
            if isinstance(a, str)}


def test_source_kinds_match_the_config_union():
    members = get_args(get_args(SourceConfig)[0])
    assert {k for m in members for k in _literal(m, "kind")} == set(SOURCE_KINDS)


def test_detector_kinds_match_the_recipe_model_and_have_params_models():
    assert _literal(DetectorSettings, "kind") == set(registry.KINDS)
    for kind in registry.KINDS:
        model = registry.params_model(kind)
        assert model.model_config.get("extra") == "forbid", kind
        assert registry.detector_class(kind).kind == kind
    with pytest.raises(ValueError, match="unknown detector kind 'nope'"):
        registry.params_model("nope")


def test_runtime_names_match_the_prompt_params(tmp_path):
    assert _literal(PromptParams, "backend") == {"auto", *RUNTIMES}
    with pytest.raises(BackendError, match="unknown backend 'nope'.*onnxruntime"):
        open_backend("nope", tmp_path)


def test_build_source_from_the_registry():
    from pydantic import TypeAdapter

    cfg = TypeAdapter(SourceConfig).validate_python({"kind": "synthetic", "count": 1,
                                                     "width": 64, "height": 64})
    src = build_source("cam0", cfg)
    assert type(src).__name__ == SOURCE_KINDS["synthetic"][1] and src.name == "cam0"
