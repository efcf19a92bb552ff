"""Bad calibration input is a clear error naming the file, and nothing is written.

Each case runs the `inspector calibrate` verb in-process, checks exit status 2, that
the message names the offending file and the reason, and that the calibration folder
is as it was (no file when there was none; the previous file byte for byte otherwise).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.cli.main import build_parser
from inspector.config.station import load_config
from inspector.core.validation import InvalidFile
from tests.helpers.calibration_scenes import flats, scale_images, views, write
from tests.helpers.files import write_config

BOARD_ARGS = ["--squares", "12x9", "--square-mm", "10"]


def calibrate(*argv: str) -> int:
    args = build_parser().parse_args(["calibrate", *[str(a) for a in argv]])
    return int(args.func(args))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() else {}


def _flats(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    darks, whites = flats()
    return write(tmp_path / "dark", darks, "d"), write(tmp_path / "white", whites, "w")


def test_view_without_the_target_names_the_file(tmp_path, capsys) -> None:
    paths = write(tmp_path / "views", views()[:6])
    blank = tmp_path / "views" / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640), 120, np.uint8))
    out = tmp_path / "calibration"
    rc = calibrate("intrinsics", "--camera", "cam0", "--dir", out, *BOARD_ARGS, *paths, blank)
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{blank}: checkerboard with 11x8 inner corners not found" in err
    assert "nothing was written" in err and not out.exists()
    # told to, it leaves the view out and calibrates from the others
    rc = calibrate("intrinsics", "--camera", "cam0", "--dir", out, *BOARD_ARGS,
                   "--skip-unusable", *paths, blank)
    assert rc == 0 and (out / "cam0.yaml").is_file()
    assert "skipped blank.png" in capsys.readouterr().out


def test_too_few_views(tmp_path, capsys) -> None:
    paths = write(tmp_path / "views", views()[:3])
    rc = calibrate("intrinsics", "--camera", "cam0", "--dir", tmp_path / "cal", *BOARD_ARGS,
                   *paths)
    assert rc == 2 and "only 3 usable view(s)" in capsys.readouterr().err
    assert not (tmp_path / "cal").exists()


def test_inconsistent_image_sizes_name_the_odd_file(tmp_path, capsys) -> None:
    paths = write(tmp_path / "views", views()[:5])
    odd = tmp_path / "views" / "odd.png"
    cv2.imwrite(str(odd), views()[5][:400, :600])
    rc = calibrate("intrinsics", "--camera", "cam0", "--dir", tmp_path / "cal", *BOARD_ARGS,
                   *paths, odd)
    err = capsys.readouterr().err
    assert rc == 2 and f"{odd}: image size 600x400 differs from 640x480" in err
    assert not (tmp_path / "cal").exists()


def test_saturated_white_frame(tmp_path, capsys) -> None:
    darks, whites = _flats(tmp_path)
    hot = tmp_path / "white" / "hot.png"
    cv2.imwrite(str(hot), np.clip(cv2.imread(str(whites[0]), cv2.IMREAD_UNCHANGED) * 1.6, 0,
                                  255).astype(np.uint8))
    rc = calibrate("flatfield", "--camera", "cam0", "--dir", tmp_path / "cal", "--dark", *darks,
                   "--white", *whites, hot)
    err = capsys.readouterr().err
    assert rc == 2 and f"{hot}: white frame saturated" in err
    assert not (tmp_path / "cal").exists()


def test_dark_not_darker_than_white(tmp_path, capsys) -> None:
    darks, whites = _flats(tmp_path)
    rc = calibrate("flatfield", "--camera", "cam0", "--dir", tmp_path / "cal", "--dark", *whites,
                   "--white", *darks)  # swapped
    err = capsys.readouterr().err
    assert rc == 2 and f"{darks[0]}: white frame is not brighter than the dark frames" in err
    assert not (tmp_path / "cal").exists()


def test_failed_step_leaves_the_existing_file_as_it_was(tmp_path, capsys) -> None:
    darks, whites = _flats(tmp_path)
    cal = tmp_path / "cal"
    assert calibrate("flatfield", "--camera", "cam0", "--dir", cal, "--dark", *darks,
                     "--white", *whites) == 0
    before = snapshot(cal)
    assert {p.split(".")[-1] for p in before} == {"yaml", "npz", "png"}
    # a scale target that is not in view, and frames of another size: both refused
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640), 90, np.uint8))
    small = write(tmp_path / "small", [d[:240, :320] for d in flats()[0]], "s")
    capsys.readouterr()
    assert calibrate("scale", "--camera", "cam0", "--dir", cal, "--squares", "22x16",
                     "--square-mm", "4", blank) == 2
    assert f"{blank}: checkerboard with 21x15 inner corners not found" in capsys.readouterr().err
    assert calibrate("flatfield", "--camera", "cam0", "--dir", cal, "--dark", *small,
                     "--white", *small) == 2
    assert "calibrated for 640x480 frames, the new images are 320x240" in \
        capsys.readouterr().err
    assert calibrate("scale", "--camera", "cam1", "--file", cal / "cam0.yaml", "--squares",
                     "22x16", "--square-mm", "4", *write(tmp_path / "s", scale_images())) == 2
    assert "belongs to camera 'cam0', not 'cam1'" in capsys.readouterr().err
    assert snapshot(cal) == before


def test_broken_calibration_files_are_named(tmp_path, capsys) -> None:
    darks, whites = _flats(tmp_path)
    cal = tmp_path / "cal"
    calibrate("flatfield", "--camera", "cam0", "--dir", cal, "--dark", *darks, "--white", *whites)
    path = cal / "cam0.yaml"
    assert calibrate("show", path) == 0
    doc = yaml.safe_load(path.read_text())
    npz = cal / doc["flatfield"]["file"]
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")  # changed behind our back
    capsys.readouterr()
    assert calibrate("show", path) == 2
    assert f"{npz}: sha256 differs from flatfield.sha256 in {path}" in capsys.readouterr().err
    doc["image_size"] = [640]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert calibrate("show", path) == 2
    err = capsys.readouterr().err
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if text.startswith("image_size"))
    assert f"{path}:{line}: image_size" in err


def test_station_config_checks_the_calibration_file(tmp_path, recipe_dir) -> None:
    darks, whites = _flats(tmp_path)
    calibrate("flatfield", "--camera", "cam0", "--dir", tmp_path / "cal", "--dark", *darks,
              "--white", *whites)
    cams = [{"name": "cam0", "calibration": "cal/cam0.yaml",
             "source": {"kind": "synthetic", "width": 640, "height": 480}}]
    cfg = load_config(write_config(tmp_path / "station.yaml", recipe_dir, cameras=cams))
    assert cfg.cameras[0].calibration == tmp_path / "cal" / "cam0.yaml"  # relative to the file
    for calibration, message in (("cal/none.yaml", "cameras[cam1].calibration: not found"),
                                 ("cal/cam0.yaml", "is the calibration of camera 'cam0'")):
        cams = [{"name": "cam1", "calibration": calibration, "source": {"kind": "synthetic"}}]
        with pytest.raises(InvalidFile) as exc:
            load_config(write_config(tmp_path / "station.yaml", recipe_dir, cameras=cams))
        assert any(message in e for e in exc.value.errors), exc.value.errors
