"""Build step that puts the shipped artefacts into the wheel (inspector/bundled/).

The models (`engines/`), the demo recipe and the demo calibration live at the checkout's
root, where developers edit them; a wheel must carry them so that an installed Inspector
(a plain `pip install`, the service installer's venv) runs the demo and loads its models
from any folder. An editable install reads them from the checkout instead
(inspector.core.assets). Everything else is in setup.cfg.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source, patterns) copied under inspector/bundled/ with the same relative path
BUNDLED = [
    ("engines", ["*.onnx", "*.onnx.sha256", "*/*.onnx", "*/manifest.json", "*/weights.pt",
                 "README.md"]),
    ("recipes/demo", ["recipe.yaml", "prompts/*", "normal/*"]),
    ("calibration", ["demo-cam0.yaml", "demo-cam0.*.npz"]),
]


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "inspector" / "bundled"
        shutil.rmtree(target, ignore_errors=True)
        for folder, patterns in BUNDLED:
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    if src.is_file():
                        dest = target / folder / src.relative_to(ROOT / folder)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, dest)
        (target / "BUILD.json").write_text(json.dumps({"commit": _commit()}) + "\n")


setup(cmdclass={"build_py": BuildWithAssets})
