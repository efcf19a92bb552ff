"""Station config validation: good files load; every bad one names file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config.station import load_config
from inspector.core.validation import InvalidFile
from tests.helpers.files import write_config


def test_good_config_loads_and_resolves_paths(tmp_path: Path, recipe_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path / "station.yaml", recipe_dir))
    assert cfg.station.site == "plant1"
    assert cfg.cameras[0].source.kind == "synthetic"
    assert cfg.cameras[0].source.width == 128
    assert cfg.recipe == recipe_dir
    assert cfg.recipes_dir == recipe_dir.parent
    assert cfg.queues.frames == 4


def _errors(path: Path) -> list[str]:
    with pytest.raises(InvalidFile) as exc:
        load_config(path)
    return exc.value.errors


def test_unknown_key_is_an_error_with_line(tmp_path: Path, recipe_dir: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {site: a, line: b, station: c}\n"
        "cameras:\n"
        "  - name: cam0\n"
        "    source:\n"
        "      kind: synthetic\n"
        "      wdth: 640\n"
        f"recipe: {recipe_dir}\n"
    )
    errors = _errors(path)
    assert errors == [f"{path}:6: cameras[0].source.wdth: unknown key (not allowed here; "
                      "check the spelling)"]


def test_wrong_type_names_field_line_and_value(tmp_path: Path, recipe_dir: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {site: a, line: b, station: c}\n"
        "cameras:\n"
        "  - name: cam0\n"
        "    source: {kind: replay, path: ., rate_hz: fast}\n"
        f"recipe: {recipe_dir}\n"
        "queues:\n"
        "  frames: 0\n"
    )
    errors = _errors(path)
    assert len(errors) == 2
    assert errors[0].startswith(f"{path}:4: cameras[0].source.rate_hz: ")
    assert "(got 'fast')" in errors[0]
    assert errors[1].startswith(f"{path}:7: queues.frames: Input should be greater than or "
                                "equal to 1")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("station: {site: 'bad site', line: b}\ncameras: []\n")
    errors = _errors(path)
    fields = sorted(e.split(": ")[1] for e in errors)
    assert fields == ["cameras", "recipe", "station.site", "station.station"]
    assert all(e.startswith(f"{path}:") for e in errors)


def test_missing_recipe_and_replay_path(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {site: a, line: b, station: c}\n"
        "cameras: [{name: cam0, source: {kind: synthetic}}]\n"
        "recipe: nowhere\n"
    )
    (err,) = _errors(path)
    assert f"recipe: not found: {tmp_path / 'nowhere'}" in err


def test_unknown_source_kind(tmp_path: Path, recipe_dir: Path) -> None:
    path = write_config(tmp_path / "s.yaml", recipe_dir,
                        cameras=[{"name": "cam0", "source": {"kind": "webcam"}}])
    (err,) = _errors(path)
    assert "cameras[0].source" in err and "'webcam'" in err


def test_duplicate_camera_names(tmp_path: Path, recipe_dir: Path) -> None:
    cam = {"name": "cam0", "source": {"kind": "synthetic"}}
    (err,) = _errors(write_config(tmp_path / "s.yaml", recipe_dir, cameras=[cam, cam]))
    assert "camera names must be unique; repeated: cam0" in err


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("station: {site: a\ncameras: [\n")
    (err,) = _errors(path)
    assert err.startswith(f"{path}:") and "YAML syntax error" in err


def test_missing_file(tmp_path: Path) -> None:
    (err,) = _errors(tmp_path / "absent.yaml")
    assert "cannot read" in err and "absent.yaml" in err


def test_yaml_tags_are_not_code(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("station: !!python/object/apply:os.system ['true']\n")
    (err,) = _errors(path)
    assert "YAML syntax error" in err


def test_a_bare_yaml_off_is_the_word_off(tmp_path: Path, recipe_dir: Path) -> None:
    path = write_config(tmp_path / "station.yaml", recipe_dir, cameras=[{"name": "cam0", "source": {
        "kind": "genicam", "trigger": {"mode": "OFF_WORD"}}}])
    path.write_text(path.read_text().replace("OFF_WORD", "off"))  # YAML 1.1: false
    assert "mode: off" in path.read_text()
    assert load_config(path).cameras[0].source.trigger.mode == "off"
