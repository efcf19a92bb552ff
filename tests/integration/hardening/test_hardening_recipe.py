"""Issue 16, deliverable 3: recipes are closed. Every path a recipe names resolves inside
its folder; image sizes are read from the header and capped before decoding; `inspector
validate` runs the same checks as `recipe validate`; enrolment children have limits."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from inspector.core.validation import InvalidFile
from inspector.recipes import cache as recipe_cache
from inspector.recipes.recipe import load_recipe
from inspector.runtime.service import load_active
from tests.helpers.files import write_recipe
from tests.helpers.hardening import cli


def _bank(folder: Path) -> dict:
    return json.loads((folder / "prompts" / "prompts.json").read_text())


def _set_bank(folder: Path, bank: dict) -> None:
    (folder / "prompts" / "prompts.json").write_text(json.dumps(bank, indent=1))


def _both_refuse(folder: Path, capsys: pytest.CaptureFixture, words: str) -> str:
    assert cli("validate", str(folder)) == 1
    assert cli("recipe", "validate", str(folder)) != 0
    err = capsys.readouterr().err
    assert err.count(words) == 2, err
    return err


def test_prompt_file_name_leading_out_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes((folder / "prompts" / "p0.png").read_bytes())
    bank = _bank(folder)
    bank["images"][0]["file_name"] = "../../../outside/x.png"
    _set_bank(folder, bank)
    err = _both_refuse(folder, capsys, "images[0].file_name: ../../../outside/x.png leads out")
    assert "prompts.json:" in err
    bank["images"][0]["file_name"] = str(outside / "x.png")
    _set_bank(folder, bank)
    _both_refuse(folder, capsys, "is an absolute path")
    print("NOW prompt file_name ../ or absolute: refused by validate and recipe validate")


def test_normal_elsewhere_and_symlinks_out_are_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(text + f"normal: {elsewhere}\n")
    err = _both_refuse(folder, capsys, f"normal: Value error, {elsewhere} is an absolute path")
    assert f"recipe.yaml:{len(text.splitlines()) + 1}: normal" in err
    (folder / "recipe.yaml").write_text(text)
    (elsewhere / "good9.png").write_bytes((folder / "normal" / "good0.png").read_bytes())
    os.symlink(elsewhere / "good9.png", folder / "normal" / "good9.png")
    _both_refuse(folder, capsys, "outside the recipe folder")
    (folder / "normal" / "good9.png").unlink()
    os.symlink(folder / "normal" / "good0.png", folder / "normal" / "good8.png")  # inside: ok
    assert cli("validate", str(folder)) == 0
    print("NOW normal: /tmp/elsewhere and symlinks out: refused; a symlink inside is fine")


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h (no pixel data: a decoder would fail or allocate)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0,
                                                                     0, 0, 0))
                     + chunk(b"IEND", b""))


def test_huge_prompt_image_is_refused_from_its_header(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    _png_header(folder / "prompts" / "p0.png", 20000, 20000)
    t0 = time.monotonic()
    _both_refuse(folder, capsys, "image is 20000x20000; the limit is 16384 px")
    with pytest.raises(InvalidFile, match="20000x20000") as info:
        load_active(folder, isolate=True)  # what a switch does
    took = time.monotonic() - t0
    assert took < 10 and all(len(e) < 400 for e in info.value.errors)
    print(f"NOW 20000x20000 prompt: refused from its header in {took:.1f} s, short error")


def test_validate_runs_the_deep_checks_of_recipe_validate(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    (folder / "normal" / "good1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    load_recipe(folder)  # the cheap check of every switch passes...
    _both_refuse(folder, capsys, "good1.png: normal: not a readable image")  # ...these not


def test_enrolment_child_is_stopped_at_its_time_limit(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    recipe = load_recipe(folder)
    monkeypatch.setattr(recipe_cache, "ENROL_TIMEOUT_S", 0.3)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="took longer than 0.3 s and was stopped"):
        recipe_cache.enroll_isolated(recipe, recipe_cache.detector_for(recipe))
    assert time.monotonic() - t0 < 5
    assert not (folder / "cache").exists() or not any((folder / "cache").iterdir())


def test_enrolment_child_is_stopped_at_its_memory_limit(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_recipe(tmp_path / "recipes" / "r")
    recipe = load_recipe(folder)
    monkeypatch.setenv("INSPECTOR_ENROL_MEMORY_MB", "64")  # read by the child
    with pytest.raises(ValueError, match="enrolment stopped") as info:
        recipe_cache.enroll_isolated(recipe, recipe_cache.detector_for(recipe))
    assert "Traceback" not in str(info.value)
