"""Command line: `inspector validate | run | demo` (more verbs arrive with their stages)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from inspector.core.validation import InvalidFile, load_yaml
from inspector.runtime.version_info import VersionAction

# Modules that add verbs: each has `register(subparsers)` and owns its commands.
EXTENSIONS: list[str] = ["inspector.cli.recipe", "inspector.cli.service", "inspector.cli.model",
                         "inspector.cli.calibrate", "inspector.cli.unknown",
                         "inspector.cli.camera", "inspector.cli.bench", "inspector.cli.outbox",
                         "inspector.cli.user"]


def _is_recipe(path: Path) -> bool:
    if path.is_dir() or path.name == "recipe.yaml":
        return True
    try:
        data, _ = load_yaml(path)
    except InvalidFile:
        return False
    return isinstance(data, dict) and "classes" in data and "cameras" not in data


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each config or recipe given, printing every error; 1 if any is invalid."""
    from inspector.config.station import load_config
    from inspector.recipes.check import check_recipe

    bad = 0
    for path in args.files:
        path = Path(path)
        kind = "recipe" if _is_recipe(path) else "config"
        try:
            if not path.exists():
                raise InvalidFile(path, [f"{path}: file not found"])
            if kind == "recipe":  # the same checks as `recipe validate`
                report = check_recipe(path)
                if report.errors:
                    raise InvalidFile(path, report.errors)
            else:
                _check_state(path, load_config(path))
        except InvalidFile as exc:
            bad += 1
            print(f"{path}: invalid {kind}, {len(exc.errors)} error(s):", file=sys.stderr)
            for e in exc.errors:
                print(f"  {e}", file=sys.stderr)
        else:
            print(f"{path}: valid {kind}")
    return 1 if bad else 0


def _check_state(path: Path, cfg) -> None:
    """The state dir and the outbox as `inspector run` will need them (file:line: field)."""
    from inspector.core.validation import line_of
    from inspector.runtime.state_check import state_problems

    problems = state_problems(cfg)
    if problems:
        _, node = load_yaml(path)
        raise InvalidFile(path, [f"{path}:{line_of(node, loc) or 1}: {'.'.join(loc)}: {msg}"
                                 for loc, msg in problems])


def load_config_or_report(path: str | Path):
    """The station config, or None after printing every error (callers exit with 2)."""
    from inspector.config.station import load_config

    try:
        return load_config(Path(path))
    except InvalidFile as exc:
        print(f"{path}: invalid config:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the inspection service until a signal stops it; 2 when it cannot start."""
    from inspector.runtime.service import Service

    cfg = load_config_or_report(args.config)
    if cfg is None:
        return 2
    from inspector.outputs.mqtt.outbox import OutboxError
    from inspector.runtime.instance_lock import AlreadyRunning, StateDirError

    service = Service(cfg)
    service.install_signal_handlers()
    web = opc = None
    try:
        service.start()
        if cfg.web.enabled:  # the station page, on its own thread of this process
            from inspector.web.server import WebServer

            web = WebServer.attach(service, cfg)
            web.start()
        if cfg.opcua.enabled:  # the OPC UA server for PLCs, on its own thread
            from inspector.opcua.server import OpcUaServer

            opc = OpcUaServer(service, cfg)
            opc.start()
    except (AlreadyRunning, StateDirError, OutboxError, OSError, RuntimeError) as exc:
        print(f"inspector run: {exc}", file=sys.stderr)  # a clear message, no traceback
        service.stop()
        return 2
    try:
        service.run_until_stopped()
    finally:
        for server in (web, opc):
            if server is not None:
                server.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo on synthetic (or simulated GenICam) parts from the command's options."""
    from inspector.demo.run import run_demo

    parts = args.parts if args.parts is not None else (None if args.ui else 200)
    return run_demo(parts=parts, out=Path(args.out), seed=args.seed,
                    recipe=Path(args.recipe) if args.recipe else None, rate_hz=args.rate,
                    width=args.size, height=args.size, broker=args.broker,
                    calibration=args.calibration, camera=args.camera,
                    ui_port=args.ui_port if args.ui else None)


def build_parser() -> argparse.ArgumentParser:
    """The `inspector` parser: validate, run, demo, plus the verbs other modules register."""
    p = argparse.ArgumentParser(prog="inspector", description=__doc__)
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--version", action=VersionAction,
                   help="version, commit and the sha256 of each model artefact, then exit")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check station configs and recipes; every error shown")
    v.add_argument("files", nargs="+", help="config .yaml, recipe folder or recipe.yaml")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run the inspection service")
    r.add_argument("--config", required=True, help="station config YAML")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="inspect synthetic parts with the demo recipe")
    d.add_argument("--parts", type=int, default=None,
                   help="number of parts (default 200; with --ui: until Ctrl-C)")
    d.add_argument("--out", default="demo-out", help="output folder (results, NG overlays)")
    d.add_argument("--seed", type=int, default=1000, help="synthetic part seed")
    d.add_argument("--recipe", default=None, help="recipe folder (default: recipes/demo)")
    d.add_argument("--rate", type=float, default=None, help="parts/s (default: flat out)")
    d.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    d.add_argument("--camera", choices=["synthetic", "genicam"], default="synthetic",
                   help="synthetic parts, or a GenICam camera (default: simulated viky.cti)")
    d.add_argument("--broker", default="auto",
                   help="auto: start a local mosquitto; none; or HOST:PORT of a broker")
    d.add_argument("--calibration", default="auto", help="camera calibration file; auto: "
                   "calibration/demo-cam0.yaml when it fits the frame size; none")
    d.add_argument("--ui", action="store_true", help="also serve the station page (teach a "
                   "left-out defect kind from the browser); parts at 2/s until Ctrl-C")
    d.add_argument("--ui-port", type=int, default=8080, help="port of the page (default 8080)")
    d.set_defaults(func=cmd_demo)

    for name in EXTENSIONS:  # verbs of other stages register themselves
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `inspector` command: parse, set up logging, run the verb."""
    args = build_parser().parse_args(argv)
    from inspector.runtime.logs import setup

    setup(args.log_level)  # key=value lines on stdout (journald), secrets redacted
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
