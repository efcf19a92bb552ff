"""`inspector recipe ...`: create, check, enrol, list, show, switch and extend recipes.

    inspector recipe new recipes/bracket --id bracket --product "Bracket 12" \\
        --class scratch:11 --class dent:12:critical --normal good/*.png
    inspector recipe import-coco recipes/bracket data/train.json --per-class 4 --seed 0
    inspector recipe add-prompt recipes/bracket ng_0042.png --box 120,80,30,12 \\
        --class burr --plc-code 17 --switch --config station.yaml
    inspector recipe validate recipes/bracket      # every error with file:line: field
    inspector recipe enroll recipes/bracket        # prototypes + normal bank -> cache/
    inspector recipe show recipes/bracket          # contact sheet PNG of the prompt bank
    inspector recipe list --config station.yaml    # the station's recipes, * = active
    inspector recipe switch bracket --config station.yaml   # the running service swaps

Exit codes: 0 done, 1 refused (invalid recipe, failed switch), 2 bad input file,
3 no running service. Edits are all-or-nothing and bump the recipe's rev.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from inspector.core.validation import InvalidFile

SEVERITIES = ("minor", "major", "critical")


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h (four numbers), got {text!r}")
    return vals  # type: ignore[return-value]


def _class_spec(text: str):
    """NAME:PLC[:SEVERITY] for `recipe new`."""
    from inspector.recipes.edit import NewClass

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit() or (
            len(parts) == 3 and parts[2] not in SEVERITIES):
        raise argparse.ArgumentTypeError(
            f"expected NAME:PLC_CODE[:{'|'.join(SEVERITIES)}], got {text!r}")
    return NewClass(parts[0], int(parts[1]), severity=parts[2] if len(parts) == 3 else "major")


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def _fail(exc: InvalidFile, what: str) -> int:
    print(f"{exc.path}: {what}, {len(exc.errors)} error(s):", file=sys.stderr)
    for e in exc.errors:
        print(f"  {e}", file=sys.stderr)
    return 2


def _load_config(path: str):
    from inspector.config.station import load_config

    return load_config(Path(path))


# --- verbs ----------------------------------------------------------------------------
def cmd_new(args: argparse.Namespace) -> int:
    """Create a recipe folder from the command line's id, product, classes and good parts."""
    from inspector.recipes.edit import new_recipe

    try:
        r = new_recipe(Path(args.folder), args.id, args.product, args.cls or [],
                       mm_per_px=args.mm_per_px, normals=[Path(p) for p in args.normal or []])
    except InvalidFile as exc:
        return _fail(exc, "not created")
    print(f"created {r.folder}: recipe {r.id} rev {r.rev}, {len(r.classes)} class(es), "
          f"{len(args.normal or [])} good part(s); next: import-coco or add-prompt, then enroll")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Deep-check each recipe (check_recipe), printing warnings and every error."""
    from inspector.recipes.check import check_recipe

    bad = 0
    for path in args.recipes:
        report = check_recipe(Path(path))
        for w in report.warnings:
            print(f"{path}: warning: {w}", file=sys.stderr)
        if report.errors:
            bad += 1
            print(f"{path}: invalid recipe, {len(report.errors)} error(s):", file=sys.stderr)
            for e in report.errors:
                print(f"  {e}", file=sys.stderr)
        else:
            r = report.recipe
            print(f"{path}: valid recipe {r.id} rev {r.rev} sha256 {r.sha256[:12]}")
    return 1 if bad else 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enrol each recipe, or load its fresh cache, and say which happened."""
    from inspector.inference.detectors.select import describe_choice
    from inspector.recipes.cache import detector_for, enroll_cached
    from inspector.recipes.recipe import load_recipe

    for path in args.recipes:
        try:
            recipe = load_recipe(Path(path))
            detector = detector_for(recipe)
            got = enroll_cached(recipe, detector, progress=not args.quiet, rebuild=args.rebuild)
        except InvalidFile as exc:
            return _fail(exc, "cannot enrol")
        except (ValueError, RuntimeError, OSError) as exc:  # e.g. a model that fails its pin
            print(f"{path}: cannot enrol: {exc}", file=sys.stderr)
            return 1
        if got.hit:
            print(f"{path}: cache is fresh ({got.path}), loaded in {got.seconds:.2f} s")
        else:
            where = f"cache written to {got.path}" if got.written else "no cache written"
            print(f"{path}: enrolled in {got.seconds:.1f} s ({got.reason}); {where}")
        chosen = describe_choice(detector)
        if chosen:  # kind select: which detector this product got, and why
            print(f"{path}: detector {chosen}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List a folder's (or a station's) recipes as a table, marking the one running."""
    from inspector.recipes.store import list_recipes

    active = None
    if args.config:
        try:
            cfg = _load_config(args.config)
        except InvalidFile as exc:
            return _fail(exc, "invalid config")
        folder = Path(args.folder) if args.folder else cfg.recipes_dir
        active = _service_state(cfg)
    else:
        folder = Path(args.folder or "recipes")
    try:
        entries = list_recipes(folder)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("| | folder | id | rev | classes | prompts | normals | sha256 | cache |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e in entries:
        mark = "*" if active and active.get("sha256") == e.sha256 and e.sha256 else ""
        if e.error:
            print(f"| | {e.folder.name} | {e.id} | | | | | | INVALID: {e.error} |")
        else:
            print(f"| {mark} | {e.folder.name} | {e.id} | {e.rev} | {e.classes} | {e.prompts} | "
                  f"{e.normals} | {e.sha256[:12]} | {e.cache} |")
    if active is not None:
        print(f"\nactive in the running service: {active['id']} rev {active['rev']}")
    return 0


def _service_state(cfg) -> dict | None:
    """The active recipe of the running service, or None if none is running."""
    from inspector.runtime.control import call
    from inspector.runtime.service import control_path

    try:
        answer = call(control_path(cfg), {"cmd": "status"}, timeout=5.0)
    except (ConnectionError, OSError, ValueError):
        return None
    return (answer.get("state") or {}).get("recipe") if answer.get("ok") else None


def cmd_show(args: argparse.Namespace) -> int:
    """Render a recipe's prompt bank as a contact sheet and print its classes."""
    from inspector.recipes.cache import CACHE_DIR
    from inspector.recipes.contact_sheet import write_contact_sheet
    from inspector.recipes.recipe import load_recipe

    try:
        recipe = load_recipe(Path(args.recipe))
        out = Path(args.out) if args.out else recipe.folder / CACHE_DIR / "prompts.png"
        write_contact_sheet(recipe, out)
    except InvalidFile as exc:
        return _fail(exc, "invalid recipe")
    print(f"recipe {recipe.id} rev {recipe.rev} sha256 {recipe.sha256[:12]}")
    for c in recipe.classes:
        print(f"  {c.name:<20} PLC {c.plc_code:<5} threshold {c.threshold:<4} "
              f"min {c.min_area_mm2} mm2, max {c.max_count}, {c.severity}")
    print(f"contact sheet: {out}")
    return 0


def _switch(config: str, name: str, rev: int | None, timeout: float) -> int:
    from inspector.runtime.control import call
    from inspector.runtime.service import control_path

    try:
        cfg = _load_config(config)
    except InvalidFile as exc:
        return _fail(exc, "invalid config")
    t0 = time.monotonic()
    try:
        answer = call(control_path(cfg), {"cmd": "switch", "recipe_id": name, "rev": rev},
                      timeout=timeout)
    except (ConnectionError, TimeoutError) as exc:
        print(f"switch {name}: {exc}", file=sys.stderr)
        return 3
    answer["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(answer))
    return 0 if answer.get("ok") else 1


def cmd_switch(args: argparse.Namespace) -> int:
    """Ask the running service to switch to another recipe."""
    return _switch(args.config, args.recipe, args.rev, args.timeout)


def cmd_import_coco(args: argparse.Namespace) -> int:
    """Import prompt examples (and good parts) from a COCO file into a recipe."""
    from inspector.recipes.edit import NewClass
    from inspector.recipes.importing import import_coco

    try:
        codes = {k: NewClass(k, int(v)) for k, v in args.plc_code or []}
    except ValueError:
        print("--plc-code: expected NAME=INTEGER", file=sys.stderr)
        return 2
    try:
        s = import_coco(
            Path(args.recipe), Path(args.coco), Path(args.images) if args.images else None,
            classes=args.classes.split(",") if args.classes else None,
            per_class=args.per_class, seed=args.seed,
            image_ids=[int(v) for v in args.image_ids.split(",")] if args.image_ids else None,
            new_classes=codes, rename=dict(args.rename or []), normals=args.normals,
            replace=args.replace)
    except InvalidFile as exc:
        return _fail(exc, "nothing imported")
    print(f"{s.folder}: rev {s.rev}; {len(s.prompt_ids)} prompt(s) "
          f"({', '.join(s.prompt_ids)}); {len(s.images)} image(s) copied"
          + (f"; new classes: {', '.join(s.new_classes)}" if s.new_classes else ""))
    for n in s.notes:
        print(f"  {n}")
    return 0


def cmd_add_prompt(args: argparse.Namespace) -> int:
    """Add one prompt example to a recipe, then optionally enrol and switch to it."""
    from inspector.recipes.edit import NewClass, add_prompt

    if args.switch and not args.config:
        print("--switch needs --config (to reach the running service)", file=sys.stderr)
        return 2
    new = None
    if args.plc_code is not None:
        new = NewClass(args.cls, args.plc_code, args.threshold, args.min_area_mm2,
                       args.max_count, args.severity)
    try:
        s = add_prompt(Path(args.recipe), Path(args.image), args.box, args.cls,
                       mask=Path(args.mask) if args.mask else None, new_class=new,
                       prompt_id=args.prompt_id, frame=args.frame)
    except InvalidFile as exc:
        return _fail(exc, "prompt not added")
    print(f"{s.folder}: rev {s.rev}; added {s.prompt_ids[0]}"
          + (f" (new class {s.new_classes[0]})" if s.new_classes else ""))
    for n in s.notes:
        print(f"  {n}")
    if args.enroll:
        rc = cmd_enroll(argparse.Namespace(recipes=[args.recipe], rebuild=False,
                                           quiet=False))
        if rc:
            return rc
    if args.switch:
        return _switch(args.config, Path(args.recipe).resolve().name, s.rev, args.timeout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `recipe` and its verbs to the parser."""
    p = sub.add_parser("recipe", help="create, check, enrol, list, show, switch, extend recipes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="recipe_command", required=True)

    v = verbs.add_parser("new", help="create a recipe folder (rev 1, empty prompt bank)")
    v.add_argument("folder", help="recipe folder to create (its name is the switch name)")
    v.add_argument("--id", required=True, help="recipe id (letters, digits, _ and -)")
    v.add_argument("--product", required=True, help="product name")
    v.add_argument("--class", dest="cls", action="append", type=_class_spec,
                   metavar="NAME:PLC[:SEVERITY]", help="a defect class; repeat")
    v.add_argument("--mm-per-px", type=float, default=1.0, help="scale (default 1.0)")
    v.add_argument("--normal", nargs="*", metavar="IMAGE", help="good-part images to copy")
    v.set_defaults(func=cmd_new)

    v = verbs.add_parser("validate", help="check recipes, every image opened; all errors")
    v.add_argument("recipes", nargs="+", help="recipe folders")
    v.set_defaults(func=cmd_validate)

    v = verbs.add_parser("enroll", help="compute prototypes and the normal bank into cache/")
    v.add_argument("recipes", nargs="+", help="recipe folders")
    v.add_argument("--rebuild", action="store_true", help="enrol even if the cache is fresh")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=cmd_enroll)

    v = verbs.add_parser("list", help="the recipes of a folder (or of a station) as a table")
    v.add_argument("folder", nargs="?", help="recipes folder (default: recipes, or the "
                   "config's recipes_dir)")
    v.add_argument("--config", help="station config: its recipes and the active one")
    v.set_defaults(func=cmd_list)

    v = verbs.add_parser("show", help="render the prompt bank as a contact-sheet PNG")
    v.add_argument("recipe", help="recipe folder")
    v.add_argument("--out", help="PNG path (default: <recipe>/cache/prompts.png)")
    v.set_defaults(func=cmd_show)

    v = verbs.add_parser("switch", help="make the running service switch recipe")
    v.add_argument("recipe", help="recipe folder name (or id) under the station's recipes_dir")
    v.add_argument("--rev", type=int, help="refuse unless the recipe is at this rev")
    v.add_argument("--config", required=True, help="station config of the running service")
    v.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (enrolment)")
    v.set_defaults(func=cmd_switch)

    v = verbs.add_parser("import-coco", help="add seeded prompt examples from a COCO file")
    v.add_argument("recipe", help="recipe folder")
    v.add_argument("coco", help="COCO annotations .json")
    v.add_argument("--images", help="folder of the COCO file_names (default: images/ beside "
                   "the json, else its folder)")
    v.add_argument("--classes", help="comma-separated category names (default: all)")
    v.add_argument("--per-class", type=int, default=4, help="examples per class (default 4)")
    v.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    v.add_argument("--image-ids", help="comma-separated COCO image ids to draw from")
    v.add_argument("--plc-code", action="append", type=_pair, metavar="CLASS=CODE",
                   help="PLC code of a class new to the recipe; repeat")
    v.add_argument("--rename", action="append", type=_pair, metavar="COCO_NAME=CLASS",
                   help="map a category name to a recipe class name; repeat")
    v.add_argument("--normals", type=int, default=0,
                   help="also copy this many defect-free images into normal/")
    v.add_argument("--replace", action="store_true", help="drop the bank's old examples")
    v.set_defaults(func=cmd_import_coco)

    v = verbs.add_parser("add-prompt", help="add one defect example (box, optional mask)")
    v.add_argument("recipe", help="recipe folder")
    v.add_argument("image", help="image with the defect (same size as the good parts)")
    v.add_argument("--box", required=True, type=_box, metavar="x,y,w,h", help="defect box")
    v.add_argument("--class", dest="cls", required=True, help="class name")
    v.add_argument("--mask", help="PNG mask of the defect (non-zero = defect), image size")
    v.add_argument("--prompt-id", help="stable id (default: <class>-<n>)")
    v.add_argument("--frame", action="store_true",
                   help="IMAGE is a raw camera frame, box in frame pixels: cut to the ROI")
    g = v.add_argument_group("new class", "only for a class not yet in recipe.yaml")
    g.add_argument("--plc-code", type=int, help="PLC code (required for a new class)")
    g.add_argument("--severity", choices=SEVERITIES, default="major")
    g.add_argument("--threshold", type=float, default=0.5)
    g.add_argument("--min-area-mm2", type=float, default=0.0)
    g.add_argument("--max-count", type=int, default=0)
    g = v.add_argument_group("afterwards")
    g.add_argument("--enroll", action="store_true", help="enrol now (fills the cache)")
    g.add_argument("--switch", action="store_true",
                   help="make the running service switch to the new rev (needs --config)")
    g.add_argument("--config", help="station config of the running service")
    g.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for --switch")
    v.set_defaults(func=cmd_add_prompt)
