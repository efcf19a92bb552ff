"""Models, demo recipe and calibration are found from the package, wherever it is installed.

The installed layout itself (a wheel in a fresh venv, the service installer) is checked by
scripts/check_install.sh, which CI runs after the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from inspector import __version__
from inspector.core.assets import (
    MODELS_ENV,
    MissingAssetError,
    demo_calibration,
    demo_recipe,
    model_path,
    models_dir,
)
from inspector.core.hashing import file_sha256
from inspector.inference.detectors.prompt import PromptDetector

REPO = Path(__file__).resolve().parents[3]


def test_models_resolve_by_name_in_the_models_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # not from the working directory
    assert model_path("engines/prompt-v1") == models_dir() / "prompt-v1"
    assert model_path("prompt-v1") == models_dir() / "prompt-v1"
    assert (model_path("lite0-features.onnx")).is_file()
    assert (demo_recipe() / "recipe.yaml").is_file() and demo_calibration().is_file()


def test_models_dir_can_be_moved_and_a_missing_model_names_its_path(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "models"
    (moved / "mine").mkdir(parents=True)
    monkeypatch.setenv(MODELS_ENV, str(moved))
    assert model_path("engines/mine") == moved / "mine"
    with pytest.raises(MissingAssetError, match=re.escape(str(moved / "prompt-v1"))):
        model_path("engines/prompt-v1")
    with pytest.raises(MissingAssetError, match="INSPECTOR_MODELS_DIR"):
        PromptDetector({"model": "engines/prompt-v1"})


def test_version_names_commit_and_model_hashes(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "inspector.cli.main", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == f"inspector {__version__}"
    assert re.fullmatch(r"commit ([0-9a-f]{40}(-dirty)?|unknown)", lines[1])
    hashes = dict(reversed(line.split()) for line in lines[3:])
    assert set(hashes) == {f"{m}/{g}.onnx" for m in ("prompt-v2", "prompt-v3")
                           for g in ("encoder", "prompt", "head")} | {"lite0-features.onnx"}
    for rel, digest in hashes.items():
        assert digest == file_sha256(models_dir() / rel)
