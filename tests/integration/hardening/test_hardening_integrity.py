"""Issue 16, deliverable 6: integrity that means something. An enrolment cache edited
with its sha256 fields recomputed, or built under another host's key, is rebuilt, never
used; model graphs are pinned by sha256 in their manifest and checked on load, by
`inspector validate`, `recipe validate` and `recipe enroll`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.recipes.cache import cache_paths, detector_for, enroll_cached
from inspector.recipes.recipe import load_recipe
from tests.helpers.files import REPO, write_recipe
from tests.helpers.hardening import cli


def _enrol(folder: Path):
    r = load_recipe(folder)
    return r, enroll_cached(r, detector_for(r))


def test_edited_cache_with_recomputed_sha256_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_CACHE_KEY", str(tmp_path / "state" / "cache.key"))
    folder = write_recipe(tmp_path / "r")
    r, first = _enrol(folder)
    assert first.written and _enrol(folder)[1].hit
    state_file, meta_file = cache_paths(r)
    with np.load(state_file, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    name = next(k for k, v in state.items() if v.dtype.kind == "f" and v.size)
    state[name] = -state[name]  # the edit that wrecked recall
    np.savez(state_file, **state)
    meta = json.loads(meta_file.read_text())
    meta["state_sha256"] = hashlib.sha256(state_file.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta))
    got = _enrol(folder)[1]
    assert not got.hit and "hmac does not match" in got.reason
    assert _enrol(folder)[1].hit  # rebuilt and signed again
    monkeypatch.setenv("INSPECTOR_CACHE_KEY", str(tmp_path / "other-host.key"))
    got = _enrol(folder)[1]
    assert not got.hit and "hmac" in got.reason
    print(f"NOW edited enrolment cache: rebuilt ({got.reason})")


def _truncated_model(tmp_path: Path) -> Path:
    """A copy of a shipped model whose encoder graph is cut in half (its pin then fails)."""
    model = tmp_path / "model"
    shutil.copytree(REPO / "engines" / "prompt-v1", model,
                    ignore=shutil.ignore_patterns("weights.pt"))
    enc = model / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[: enc.stat().st_size // 2])
    return model


def test_truncated_or_unpinned_model_is_refused_everywhere(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = _truncated_model(tmp_path)
    folder = write_recipe(tmp_path / "r")
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(
        text + f"detector:\n  kind: prompt\n  params: {{model: {model}}}\n")
    assert cli("validate", str(folder)) == 1
    assert cli("recipe", "validate", str(folder)) != 0
    err = capsys.readouterr().err
    assert err.count("encoder.onnx has sha256") == 2 and "truncated or replaced" in err
    assert "detector.params.model" in err
    assert cli("recipe", "enroll", str(folder), "--quiet") == 1
    err = capsys.readouterr().err
    assert "cannot enrol" in err and "encoder.onnx has sha256" in err
    assert "Traceback" not in err


def test_a_truncated_model_of_a_candidate_is_named_by_its_field(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`select` runs the heads as one of its candidates: their model is checked too, and
    the error names the candidate's field and line."""
    model = _truncated_model(tmp_path)
    folder = write_recipe(tmp_path / "r")
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(
        text + "detector:\n  kind: select\n  params:\n    candidates:\n"
        f"      - kind: match\n      - kind: prompt\n        params: {{model: {model}}}\n")
    assert cli("validate", str(folder)) == 1
    err = capsys.readouterr().err
    line = text.count("\n") + 7
    assert f"recipe.yaml:{line}: detector.params.candidates.1.params.model:" in err
    assert "encoder.onnx has sha256" in err and "Traceback" not in err
    missing = tmp_path / "nowhere"
    (folder / "recipe.yaml").write_text(
        text + f"detector:\n  kind: prompt\n  params: {{model: {missing}}}\n")
    assert cli("validate", str(folder)) == 1
    assert "not found at" in capsys.readouterr().err
    print("NOW truncated encoder.onnx / absent model path: refused by validate, recipe "
          "validate and recipe enroll with a message")


def test_unknown_branch_encoder_is_pinned(tmp_path: Path) -> None:
    from inspector.inference.unknown.features import DEFAULT_ONNX, Encoder, pin_path

    assert Encoder(DEFAULT_ONNX).sha256 == pin_path(DEFAULT_ONNX).read_text().split()[0]
    copy = tmp_path / DEFAULT_ONNX.name
    shutil.copy(DEFAULT_ONNX, copy)
    with pytest.raises(ValueError, match="not pinned"):
        Encoder(copy)
    shutil.copy(pin_path(DEFAULT_ONNX), pin_path(copy))
    copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or replaced"):
        Encoder(copy)
