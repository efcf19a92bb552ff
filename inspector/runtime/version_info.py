"""`inspector --version`: what exactly runs on this station.

A line integrator comparing two stations needs more than the package version: the commit
it was built from and the sha256 of every model artefact the detector would load, since the
same version with other weights gives other verdicts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from inspector import __version__
from inspector.core.assets import BUNDLE, CHECKOUT, model_path, models_dir
from inspector.core.hashing import file_sha256


def default_artefacts() -> list[str]:
    """What a default recipe loads: the graphs of both models whose heads `select`'s
    candidates run (the prompt heads, and those that confirm the matcher) and the
    good-part encoder (imported here, not at the top: every CLI command imports this
    module)."""
    from inspector.inference.detectors.prompt import CONFIRM_MODEL, DEFAULT_MODEL
    from inspector.inference.runtimes.base import GRAPHS
    from inspector.inference.unknown.features import DEFAULT_ONNX

    models = [Path(m).name for m in (DEFAULT_MODEL, CONFIRM_MODEL)]
    return [f"{m}/{g}.onnx" for m in models for g in GRAPHS] + [DEFAULT_ONNX.name]


def build_commit() -> str | None:
    """The commit of a built wheel (bundled/BUILD.json), else of the source checkout."""
    build = BUNDLE / "BUILD.json"
    if build.is_file():
        return json.loads(build.read_text()).get("commit")
    if (CHECKOUT / ".git").exists():
        try:
            out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"],
                                 cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None
    return None


def version_text() -> str:
    """Version, commit, models folder and the sha256 of each default model artefact."""
    lines = [f"inspector {__version__}", f"commit {build_commit() or 'unknown'}",
             f"models {models_dir()}"]
    for rel in default_artefacts():
        path = model_path(rel, must_exist=False)
        digest = file_sha256(path) if path.is_file() else "MISSING"
        lines.append(f"  {digest}  {rel}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """Like argparse's version action, but computed only when asked (hashing takes time)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()



