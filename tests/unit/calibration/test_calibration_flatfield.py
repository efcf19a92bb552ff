"""Flat field: gain and dark from rendered dark and white frames restore uniformity.

The camera loses 35 % of the light at the image corners, has 1 % PRNU and a dark
offset of 6 grey levels with DSNU. Figure held to: non-uniformity ((max - min) / mean of
16 x 16 block means) of a fresh, independently noisy white frame above 25 % before
correction and below 1 % after it; a grey frame at half the exposure comes out at half
the white level within 1 % (the correction is affine, so it holds at every level).
"""

from __future__ import annotations

import numpy as np

from inspector.calibration.flatfield import FlatField, build_flatfield, nonuniformity
from inspector.calibration.render import render_flat
from inspector.preprocess.corrector import Corrector
from tests.helpers.calibration_scenes import CAMERA, LEVEL, flats, write


def _build(tmp_path, dtype=np.uint8):
    darks, whites = flats()
    if dtype == np.uint16:  # the same scene seen by a 16-bit camera
        darks = [d.astype(np.uint16) * 256 for d in darks]
        whites = [w.astype(np.uint16) * 256 for w in whites]
    return build_flatfield(write(tmp_path / "dark", darks, "d"),
                           write(tmp_path / "white", whites, "w"))


def test_flatfield_restores_uniformity(tmp_path) -> None:
    res = _build(tmp_path)
    info = res.info
    assert info.nonuniformity_before > 0.25
    assert info.nonuniformity_after is not None and info.nonuniformity_after < 0.01
    assert info.gain_max > 1.35 and info.gain_min < 1.0  # vignetting and PRNU undone
    assert info.bad_pixels == 0
    flat = FlatField.from_maps(res.dark, res.gain, np.uint8)
    rng = np.random.default_rng(123)  # new noise: not a frame the gain was made from
    white = render_flat(CAMERA, LEVEL, rng)
    grey = render_flat(CAMERA, LEVEL / 2, rng)
    assert nonuniformity(white) > 0.25
    out_white, out_grey = flat.apply(white), flat.apply(grey)
    assert nonuniformity(out_white) < 0.01
    assert nonuniformity(out_grey) < 0.01
    # the dark offset is removed from both: half the light gives half the level
    assert abs(out_grey.mean() / out_white.mean() - 0.5) < 0.01
    assert abs(out_white.mean() - info.white_level) < 1.0


def test_flatfield_on_16_bit_frames_gives_8_bit(tmp_path) -> None:
    res = _build(tmp_path, np.uint16)
    assert res.info.dtype == "uint16"
    corr = Corrector((CAMERA.width, CAMERA.height),
                     FlatField.from_maps(res.dark, res.gain, np.uint16), backend="cpu")
    white = render_flat(CAMERA, LEVEL, np.random.default_rng(5)).astype(np.uint16) * 256
    out = corr(white, (10, 10, 600, 400)).image
    assert out.dtype == np.uint8 and out.shape == (400, 600)
    assert nonuniformity(out) < 0.01
    assert abs(out.mean() - res.info.white_level / 256) < 1.0
