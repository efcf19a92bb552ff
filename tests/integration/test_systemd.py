"""The unit, its snippets and the installer: `systemd-analyze verify`, the offline
security exposure (fails above 2.0), every hardening relaxation commented, the
sysusers snippet creating the user in a scratch root, and the installer staged into a
folder (DESTDIR): idempotent, never overwriting the operator's config, undone by the
uninstaller. Needs systemd-analyze / systemd-sysusers / shellcheck (Debian packages
`systemd`, `shellcheck`); each test skips with the reason when its tool is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.files import REPO

UNIT = REPO / "systemd" / "inspector.service"
INSTALL = REPO / "scripts" / "install-service.sh"
UNINSTALL = REPO / "scripts" / "uninstall-service.sh"
MAX_EXPOSURE = 2.0


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install "
                    f"{'shellcheck' if tool == 'shellcheck' else 'systemd'})")
    return path


def unit_lines() -> list[str]:
    return UNIT.read_text().splitlines()


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_lines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_verifies(tmp_path: Path) -> None:
    need("systemd-analyze")
    # verify checks that ExecStart binaries exist: point them at a stand-in for the venv
    stub = tmp_path / "inspector"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "inspector.service"
    unit.write_text(UNIT.read_text().replace("/opt/inspector/venv/bin/inspector", str(stub)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    noise = [s for s in (res.stdout + res.stderr).splitlines() if "inspector.service" in s]
    assert noise == []  # no unknown keys, no ignored or invalid values


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    need("systemd-analyze")
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for inspector\.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE, res.stdout


def test_unit_contract() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"] and s["StartLimitBurst"] and s["StartLimitIntervalSec"]
    assert s["WatchdogSec"] == ["30s"]
    assert re.fullmatch(r"(\d+)min", s["TimeoutStartSec"][0])
    assert int(s["TimeoutStartSec"][0][:-3]) >= 15  # a first TensorRT engine build
    assert s["User"] == ["inspector"] and s["StateDirectory"] == ["inspector"]
    assert s["ConfigurationDirectory"] == ["inspector"]
    assert set(s["SupplementaryGroups"][0].split()) >= {"video", "render"}
    assert s["ExecStartPre"][0].endswith("inspector validate /etc/inspector/station.yaml")
    assert s["LoadCredential"][0].startswith("mqtt-password:")
    assert "Environment" not in s or "PASSWORD" not in " ".join(s["Environment"]).upper()


def test_every_relaxation_is_commented() -> None:
    """A setting left open (or weakened) for devices, JIT or networking says why."""
    relaxed = re.compile(r"^(MemoryDenyWriteExecute=no|PrivateUsers=no|ProcSubset=all|"
                         r"RestrictAddressFamilies=|DevicePolicy=|IPAddressAllow=|"
                         r"SupplementaryGroups=|UMask=|SystemCallFilter=@system-service)")
    lines = unit_lines()
    for i, line in enumerate(lines):
        if relaxed.match(line):
            above = lines[i - 1]
            assert above.startswith("#"), f"line {i + 1} `{line}` has no comment above it"
    assert settings().get("PrivateDevices", ["no"]) == ["no"]  # cameras and GPU stay visible


def test_sysusers_snippet_creates_the_service_user(tmp_path: Path) -> None:
    need("systemd-sysusers")
    root = tmp_path / "root"
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(REPO / "systemd/inspector.sysusers.conf", root / "usr/lib/sysusers.d/x.conf")
    res = subprocess.run(["systemd-sysusers", f"--root={root}"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in
              (root / "etc/passwd").read_text().splitlines()}
    assert passwd["inspector"][5] == "/var/lib/inspector"
    assert passwd["inspector"][6] == "/usr/sbin/nologin"
    groups = {line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    assert {"inspector", "video", "render", "plugdev"} <= groups


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """path -> (mode, sha256 or 'dir') of everything under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = oct(p.stat().st_mode & 0o7777)
        digest = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[p.relative_to(root).as_posix()] = (mode, digest)
    return out


def run_script(script: Path, dest: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "DESTDIR": str(dest)})
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_installer_stages_idempotently_and_uninstalls(tmp_path: Path) -> None:
    dest = tmp_path / "stage"
    first = run_script(INSTALL, dest, "--no-venv")
    assert "wrote /etc/inspector/station.yaml" in first.stdout
    snap = tree(dest)
    assert snap["etc/systemd/system/inspector.service"][1] == \
        hashlib.sha256(UNIT.read_bytes()).hexdigest()
    assert snap["etc/inspector/credentials"][0] == "0o700"
    assert snap["etc/inspector/credentials/mqtt-password"][0] == "0o600"
    assert "usr/lib/sysusers.d/inspector.conf" in snap
    assert "usr/lib/tmpfiles.d/inspector.conf" in snap
    assert "etc/inspector/recipes/demo/recipe.yaml" in snap
    # the staged config is valid as written (recipe path relative to /etc/inspector)
    res = subprocess.run([sys.executable, "-m", "inspector.cli.main", "validate",
                          str(dest / "etc/inspector/station.yaml")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr

    second = run_script(INSTALL, dest, "--no-venv")
    assert "installed" not in second.stdout and "wrote" not in second.stdout
    assert tree(dest) == snap  # idempotent: nothing changed

    station = dest / "etc/inspector/station.yaml"
    station.write_text(station.read_text() + "# edited by the operator\n")
    run_script(INSTALL, dest, "--no-venv")
    assert station.read_text().endswith("# edited by the operator\n")  # never overwritten

    run_script(UNINSTALL, dest)
    left = tree(dest)
    assert "etc/systemd/system/inspector.service" not in left
    assert not any(k.startswith("opt/inspector") for k in left)
    assert "etc/inspector/station.yaml" in left  # config and state stay without --purge
    run_script(UNINSTALL, dest)  # idempotent
    run_script(UNINSTALL, dest, "--purge")
    assert not (dest / "etc/inspector").exists()


def test_installer_refuses_to_touch_the_system_without_root(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: the refusal is for unprivileged users")
    res = subprocess.run(["bash", str(INSTALL), "--no-venv"], capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in os.environ.items()
                                                     if k != "DESTDIR"})
    assert res.returncode == 1 and "run as root" in res.stderr


def test_scripts_pass_shellcheck() -> None:
    need("shellcheck")
    res = subprocess.run(["shellcheck", str(INSTALL), str(UNINSTALL)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout
