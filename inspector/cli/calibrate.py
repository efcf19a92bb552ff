"""`inspector calibrate intrinsics | flatfield | scale | show`: calibrate a camera.

Each step reads reference images, checks them (a bad input is an error naming the file,
and nothing is written), computes its section and writes it into the camera's file
(`calibration/<camera>.yaml` unless --file says otherwise), keeping the other sections,
plus a PNG picture beside it. The quality figures are printed as a Markdown table.
Point the station config at the file with `calibration:` under the camera.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspector.core.validation import InvalidFile

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm")


def expand_images(items: list[str]) -> list[Path]:
    """Files as given; a folder stands for its image files, sorted by name."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _squares(text: str) -> tuple[int, int]:
    try:
        a, b = text.lower().split("x")
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS squares, e.g. 10x7, got {text!r}"
                                         ) from None


def _target(args: argparse.Namespace):
    from inspector.calibration.targets import TargetSpec

    return TargetSpec(kind="charuco" if args.charuco else "checkerboard",
                      squares=args.squares, square_mm=args.square_mm,
                      marker_mm=args.marker_mm, dictionary=args.dictionary)


def _file(args: argparse.Namespace) -> Path:
    from inspector.calibration.store import default_path

    return Path(args.file) if args.file else default_path(Path(args.dir), args.camera)


def _table(rows: list[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    lines = [f"| {'figure':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
    return "\n".join(lines + [f"| {k:<{w}} | {v} |" for k, v in rows])


def _expect(path: Path, cal) -> tuple[int, int] | None:
    """The size every image must have: the existing file's (a new file takes the images')."""
    return tuple(cal.image_size) if path.exists() else None


def _size_of(paths: list[Path]) -> tuple[int, int]:
    from inspector.calibration.inputs import read_frame

    h, w = read_frame(paths[0]).shape
    return w, h


def cmd_intrinsics(args: argparse.Namespace) -> int:
    """Fit the camera matrix and lens distortion; drops a scale measured with the old lens."""
    from inspector.calibration.inputs import read_frame
    from inspector.calibration.intrinsics import calibrate_intrinsics
    from inspector.calibration.pictures import intrinsics_picture
    from inspector.calibration.store import existing_or_new, save_calibration

    path = _file(args)
    paths = expand_images(args.images)
    spec = _target(args)
    size = _size_of(paths)
    cal = existing_or_new(path, args.camera, args.serial, size)
    res = calibrate_intrinsics(paths, spec, _expect(path, cal), args.skip_unusable, args.k3,
                               progress=True)
    cal.intrinsics = res.intrinsics
    dropped = cal.scale is not None
    cal.scale = None  # measured through the old lens model: measure it again
    save_calibration(cal, path)
    pic = intrinsics_picture(res, read_frame(res.views[0]), path.with_suffix(".intrinsics.png"))
    i = res.intrinsics
    K = i.K
    rows = [("views used / given", f"{len(res.views)} / {len(paths)}"),
            ("corners", str(i.corners)), ("coverage of the image", f"{i.coverage:.0%}"),
            ("reprojection rms", f"{i.rms_px:.4f} px (worst view {i.max_view_rms_px:.4f})"),
            ("fx, fy", f"{K[0, 0]:.2f}, {K[1, 1]:.2f} px (1 sigma {i.std.get('fx', 0):.2f}, "
                       f"{i.std.get('fy', 0):.2f})"),
            ("cx, cy", f"{K[0, 2]:.2f}, {K[1, 2]:.2f} px (1 sigma {i.std.get('cx', 0):.2f}, "
                       f"{i.std.get('cy', 0):.2f})"),
            ("k1 k2 p1 p2 k3", " ".join(f"{v:.5f}" for v in i.dist_coeffs))]
    rows += [(f"skipped {p.name}", why) for p, why in res.skipped]
    print(_table(rows))
    print(f"wrote {path} and {pic}")
    if dropped:
        print("note: the scale section was removed (it depends on the lens model): run "
              "`inspector calibrate scale` again", file=sys.stderr)
    if i.coverage < 0.5:
        print(f"warning: corners cover only {i.coverage:.0%} of the image: the distortion is "
              "extrapolated near the edges; add views with the target near the corners",
              file=sys.stderr)
    return 0


def cmd_flatfield(args: argparse.Namespace) -> int:
    """Measure the dark offset and gain maps and write them with the flatfield section."""
    from inspector.calibration.flatfield import build_flatfield
    from inspector.calibration.pictures import flatfield_picture
    from inspector.calibration.store import existing_or_new, save_calibration

    path = _file(args)
    darks, whites = expand_images(args.dark), expand_images(args.white)
    cal = existing_or_new(path, args.camera, args.serial, _size_of(darks))
    res = build_flatfield(darks, whites, _expect(path, cal), args.smooth_px, progress=True)
    cal.flatfield = res.info
    save_calibration(cal, path, {"dark": res.dark, "gain": res.gain})
    pic = flatfield_picture(res, path.with_suffix(".flatfield.png"))
    f = res.info
    after = "n/a (needs 2+ white frames)" if f.nonuniformity_after is None else \
        f"{f.nonuniformity_after:.2%}"
    print(_table([
        ("dark / white frames", f"{len(darks)} / {len(whites)} ({f.dtype})"),
        ("white level (corrected)", f"{f.white_level:.2f}"),
        ("non-uniformity before", f"{f.nonuniformity_before:.2%} (16x16 block means, max-min)"),
        ("non-uniformity after", f"{after} (held-out white frame)"),
        ("gain range", f"{f.gain_min:.3f} .. {f.gain_max:.3f}"),
        ("bad pixels (left as they are)", str(f.bad_pixels)),
    ]))
    print(f"wrote {path}, {path.parent / f.file} and {pic}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    """Measure mm per pixel from target images in the part plane; write the scale section."""
    from inspector.calibration.inputs import read_frame
    from inspector.calibration.pictures import scale_picture
    from inspector.calibration.scale import measure_scale
    from inspector.calibration.store import existing_or_new, save_calibration

    path = _file(args)
    paths = expand_images(args.images)
    cal = existing_or_new(path, args.camera, args.serial, _size_of(paths))
    res = measure_scale(paths, _target(args), cal.intrinsics, _expect(path, cal),
                        args.square_mm_uncertainty, progress=True)
    cal.scale = res.info
    save_calibration(cal, path)
    pic = scale_picture(res, read_frame(paths[0]), path.with_suffix(".scale.png"))
    s = res.info
    print(_table([
        ("mm per pixel", f"{s.mm_per_px:.6f}"),
        ("uncertainty (1 sigma)", f"{s.uncertainty_mm_per_px:.3g} mm/px "
                                  f"({100 * s.uncertainty_mm_per_px / s.mm_per_px:.3g} %; "
                                  f"areas {200 * s.uncertainty_mm_per_px / s.mm_per_px:.3g} %)"),
        ("anisotropy (x/y - 1)", f"{s.anisotropy:+.3%}"),
        ("affine fit rms", f"{s.fit_rms_px:.3f} px over {s.corners} corners"),
        ("lens distortion", "corrected (intrinsics)" if s.undistorted else
         "not corrected: no intrinsics in this file"),
    ]))
    print(f"wrote {path} and {pic}")
    if abs(s.anisotropy) > 0.005 or s.fit_rms_px > 0.5:
        print(f"warning: x and y scales differ by {s.anisotropy:+.2%} and the corners leave an "
              f"affine grid by {s.fit_rms_px:.2f} px rms: is the target tilted, or the lens "
              "not calibrated (`inspector calibrate intrinsics` first)?", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Check a calibration file (the flat field's .npz included) and print it."""
    from inspector.calibration.store import load_calibration

    cal = load_calibration(Path(args.file))
    if cal.flatfield is not None:
        cal.flatfield_arrays()  # checks the .npz (sha256, sizes)
    print(Path(args.file).read_text(), end="")
    print(f"# valid: {', '.join(cal.sections) or 'no sections'}", file=sys.stderr)
    return 0


def _guarded(func):
    def run(args: argparse.Namespace) -> int:
        from inspector.calibration.inputs import CalibrationError

        try:
            return func(args)
        except CalibrationError as exc:
            print(f"error: {exc}\nnothing was written.", file=sys.stderr)
            return 2
        except InvalidFile as exc:
            print("error: invalid calibration file:\n  " + "\n  ".join(exc.errors)
                  + "\nnothing was written.", file=sys.stderr)
            return 2
        except ValueError as exc:  # target description (pydantic) and the like
            print(f"error: {exc}\nnothing was written.", file=sys.stderr)
            return 2
    return run


def _common(p: argparse.ArgumentParser, target: bool = False) -> None:
    p.add_argument("--camera", required=True, help="camera name, as in the station config")
    p.add_argument("--serial", default=None, help="camera serial number, kept in the file")
    p.add_argument("--dir", default="calibration", help="folder of calibration files "
                   "(default: calibration/)")
    p.add_argument("--file", default=None, help="calibration file (default: DIR/CAMERA.yaml)")
    if target:
        p.add_argument("--squares", type=_squares, required=True,
                       help="squares of the printed target, across x down, e.g. 10x7")
        p.add_argument("--square-mm", type=float, required=True, help="square size in mm")
        p.add_argument("--charuco", action="store_true", help="a ChArUco board")
        p.add_argument("--marker-mm", type=float, default=None, help="ChArUco marker size")
        p.add_argument("--dictionary", default=None,
                       help="ChArUco ArUco dictionary (default DICT_5X5_100)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `calibrate` and its steps (intrinsics, flatfield, scale, show) to the parser."""
    p = sub.add_parser("calibrate", help="calibrate a camera: intrinsics, flat field, scale")
    steps = p.add_subparsers(dest="step", required=True)

    i = steps.add_parser("intrinsics", help="camera matrix and lens distortion from views "
                         "of a checkerboard or ChArUco board")
    _common(i, target=True)
    i.add_argument("--k3", action="store_true", help="also fit k3 (wide-angle lenses)")
    i.add_argument("--skip-unusable", action="store_true",
                   help="leave out views where the target is not found (default: error)")
    i.add_argument("images", nargs="+", help="image files or folders of them")
    i.set_defaults(func=_guarded(cmd_intrinsics))

    f = steps.add_parser("flatfield", help="dark offset and gain from dark and white frames")
    _common(f)
    f.add_argument("--dark", nargs="+", required=True, help="dark frames (lens capped)")
    f.add_argument("--white", nargs="+", required=True, help="white frames (uniform target)")
    f.add_argument("--smooth-px", type=float, default=0.0,
                   help="Gaussian sigma for the gain, for textured white targets (default 0)")
    f.set_defaults(func=_guarded(cmd_flatfield))

    s = steps.add_parser("scale", help="mm per pixel from a target of known size in the part "
                         "plane")
    _common(s, target=True)
    s.add_argument("--square-mm-uncertainty", type=float, default=0.0,
                   help="1-sigma tolerance of the printed square size, mm (default 0)")
    s.add_argument("images", nargs="+", help="image files or folders of them")
    s.set_defaults(func=_guarded(cmd_scale))

    v = steps.add_parser("show", help="validate a calibration file and print it")
    v.add_argument("file")
    v.set_defaults(func=_guarded(cmd_show))
