"""The import layering of docs/DESIGN.md, as far as a user can feel it: loading a station
config imports no stage, and importing the runtime loads neither torch nor pycocotools
(`lint-imports` in .ci/run checks the layers themselves)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules
                        if m.split('.')[0] in ('torch', 'pycocotools', 'matplotlib', 'inspector'))))
"""


def loaded(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_station_config_imports_no_stage():
    mods = loaded("inspector.config.station")
    packages = {m.split(".")[1] for m in mods if m.startswith("inspector.")}
    assert packages <= {"config", "core"}, packages
    assert not [m for m in mods if not m.startswith("inspector")]


def test_runtime_import_loads_no_torch_nor_pycocotools():
    mods = loaded("inspector.runtime.service")
    assert "inspector.runtime.pipeline" in mods  # the probe did load the runtime
    heavy = [m for m in mods if m.split(".")[0] in ("torch", "pycocotools", "matplotlib")]
    assert heavy == []
    tools = [m for m in mods if m.split(".")[:2] in (["inspector", "training"],
                                                     ["inspector", "evaluation"],
                                                     ["inspector", "bench"],
                                                     ["inspector", "demo"])]
    assert tools == []
