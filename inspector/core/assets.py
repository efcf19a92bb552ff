"""Where the shipped artefacts are: the models, the demo recipe and the demo calibration.

A source checkout keeps them at its root (`engines/`, `recipes/demo/`,
`calibration/demo-cam0.yaml`), where developers edit them. A built wheel carries a copy
inside the package (`inspector/bundled/`, filled by setup.py's build step), so a plain
`pip install` or the service installer's venv finds them wherever it lives, with no second
install step. `INSPECTOR_MODELS_DIR` points the models somewhere else (a station that keeps
its engines on another disk).
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector.core.errors import InspectorError

PACKAGE = Path(__file__).resolve().parents[1]  # the inspector package (this is core/)
BUNDLE = PACKAGE / "bundled"
CHECKOUT = PACKAGE.parent
MODELS_ENV = "INSPECTOR_MODELS_DIR"


class MissingAssetError(InspectorError, FileNotFoundError):
    """A shipped artefact is not where it should be; the message names the paths tried."""


def asset_root() -> Path:
    """The folder that holds `engines/`, `recipes/` and `calibration/`."""
    return BUNDLE if BUNDLE.is_dir() else CHECKOUT


def models_dir() -> Path:
    """Folder of the shipped models: `$INSPECTOR_MODELS_DIR`, else `engines/` of the assets."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else asset_root() / "engines"


def model_path(name: str | os.PathLike[str], must_exist: bool = True) -> Path:
    """A model folder or file by name: absolute as given; `engines/x` or `x` under models_dir.

    A relative path that exists from the working directory is taken as it is, so a
    developer's `--model out/my-model` keeps working.
    """
    p = Path(name)
    if p.is_absolute() or p.exists():
        found = p
    else:
        rel = Path(*p.parts[1:]) if p.parts and p.parts[0] == "engines" else p
        found = models_dir() / rel
    if must_exist and not found.exists():
        raise MissingAssetError(
            f"model {str(name)!r} not found at {found} (models_dir {models_dir()}; "
            f"set {MODELS_ENV} or reinstall inspector)")
    return found


def demo_recipe() -> Path:
    """The shipped demo recipe folder; MissingAssetError if it is not there."""
    return _existing(asset_root() / "recipes" / "demo")


def demo_calibration() -> Path:
    """The shipped demo camera's calibration file; MissingAssetError if it is not there."""
    return _existing(asset_root() / "calibration" / "demo-cam0.yaml")


def _existing(p: Path) -> Path:
    if not p.exists():
        raise MissingAssetError(f"{p} is missing: the package is incomplete; reinstall inspector")
    return p
