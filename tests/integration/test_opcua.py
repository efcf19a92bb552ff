"""The OPC UA server as a PLC programmer meets it: asyncua's command-line tools (`uaread`,
`uacall`, `uasubscribe`), run as separate processes, against a running service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspector.config.station import load_config
from inspector.demo.local_broker import free_port
from inspector.opcua.server import OpcUaServer
from inspector.runtime.service import Service
from inspector.web.users import UserStore
from tests.helpers.files import write_config
from tests.helpers.recipe_factory import make_recipe
from tests.helpers.standins import fast_recipe

pytestmark = pytest.mark.timeout(180)
BIN = Path(sys.executable).parent
PLC = ("plc1", "plc-password-1")


@dataclass
class Station:
    service: Service
    url: str
    recipes: Path


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    root = tmp_path / "recipes"
    fast_recipe(root / "part")
    make_recipe(root / "other", "other", size=64, kinds=("scratch",), prefix="o_", plc_base=41)
    port = free_port()
    cfg = load_config(write_config(
        tmp_path / "s.yaml", root / "part", console=False,
        cameras=[{"name": "cam0", "source": {"kind": "synthetic", "width": 64, "height": 64,
                                             "triggered": True, "defect_rate": 1.0}}],
        opcua={"enabled": True, "port": port, "users": [PLC[0]]}))
    users = UserStore(cfg.storage.resolve(cfg.web.users_file))
    users.add(PLC[0], "operator", PLC[1])
    users.add("viewer", "operator", "viewer-password")  # a page user, not an OPC UA one
    service = Service(cfg)
    service.start()
    server = OpcUaServer(service, cfg)
    server.start()
    try:
        yield Station(service, server.url, root)
    finally:
        server.stop()
        service.stop()
    assert not server.is_alive()


def ua(tool: str, st: Station, *args: str, who: tuple[str, str] | None = PLC,
       timeout: float = 30) -> subprocess.CompletedProcess:
    auth = ["--user", who[0], "--password", who[1]] if who else []
    return subprocess.run([str(BIN / tool), "-u", st.url, *auth, *args], capture_output=True,
                          text=True, timeout=timeout)


def read(st: Station, name: str, who: tuple[str, str] | None = PLC) -> str:
    r = ua("uaread", st, "-n", f"ns=2;s=Inspector.{name}", who=who)
    assert r.returncode == 0, r.stderr[-500:]
    return r.stdout.strip()


def test_state_recipe_and_a_triggered_part(station: Station) -> None:
    assert read(station, "SystemState") == "Ready"
    assert read(station, "ActiveRecipeId") == "test-part"
    sub = subprocess.Popen([str(BIN / "uasubscribe"), "-u", station.url, "--user", PLC[0],
                            "--password", PLC[1], "-n", "ns=2;s=Inspector", "-t", "event"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        time.sleep(3)  # the subscription is in place
        r = ua("uacall", station, "-n", "ns=2;s=Inspector", "-m", "2:Trigger", "-t", "string",
               "PN-4711")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "[True, 'opcua-" in r.stdout
        deadline = time.monotonic() + 20
        while read(station, "LastPartId") != "PN-4711" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert read(station, "LastVerdict") in ("OK", "NG")
        assert read(station, "LastRequestId").startswith("opcua-")
        assert int(read(station, "PartsTotal")) == 1
        time.sleep(1)
    finally:
        sub.terminate()
        out = sub.communicate(timeout=10)[0]
    # uasubscribe selects the base event fields: the Message names verdict and part, the
    # type is ours (namespace 2: ResultReadyEventType), emitted by the Inspector object
    assert re.search(r"Message:LocalizedText\(Locale=None, Text='(OK|NG) PN-4711'\)", out), out
    assert "NamespaceIndex=2" in out.split("EventType:")[1].split(")")[0]
    assert "SourceName:Inspector" in out


def test_refusals_and_access(station: Station) -> None:
    # anonymous, a page user not listed in opcua.users, a wrong password: no session
    for who in (None, ("viewer", "viewer-password"), (PLC[0], "wrong-password")):
        r = ua("uaread", station, "-n", "ns=2;s=Inspector.SystemState", who=who)
        said = r.stdout + r.stderr
        assert r.returncode != 0, who
        assert "BadIdentityTokenRejected" in said or "BadUserAccessDenied" in said, (who, said)
    # a trigger while busy is refused with the reason, the first part goes on
    station.service.trigger_desk.switching(True)
    r = ua("uacall", station, "-n", "ns=2;s=Inspector", "-m", "2:Trigger", "-t", "string", "X")
    station.service.trigger_desk.switching(False)
    assert "[False, '', 'busy: switching recipe']" in r.stdout, r.stdout + r.stderr


def test_select_recipe_with_the_same_checks_as_cmd_recipe(station: Station) -> None:
    from inspector.recipes.cache import detector_for, enroll_cached
    from inspector.recipes.recipe import load_recipe

    other = load_recipe(station.recipes / "other")
    enroll_cached(other, detector_for(other))
    r = ua("uacall", station, "-n", "ns=2;s=Inspector", "-m", "2:SelectRecipe", "-t", "string",
           "nowhere,-1")
    assert "[False, " in r.stdout and "unknown recipe" in r.stdout, r.stdout + r.stderr
    # uacall sends every value of one call as the same type: a rev must be given as Int32,
    # so the tool cannot mix types; the service's own check is exercised above, the
    # switch itself through the asyncua client object below
    import asyncio

    from asyncua import Client
    from asyncua import ua as uat

    async def select() -> list:
        client = Client(station.url)
        client.set_user(PLC[0])
        client.set_password(PLC[1])
        async with client:
            obj = client.get_node("ns=2;s=Inspector")
            return await obj.call_method("2:SelectRecipe", uat.Variant("other"),
                                         uat.Variant(-1, uat.VariantType.Int32))

    assert asyncio.run(select()) == [True, "other rev 1"]
    assert station.service.pipeline.active.recipe.id == "other"
    deadline = time.monotonic() + 5
    while read(station, "ActiveRecipeId") != "other" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read(station, "ActiveRecipeId") == "other"
