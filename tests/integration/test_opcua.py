"""The OPC UA server as a PLC programmer meets it: asyncua's command-line tools (`uaread`,
`uacall`, `uasubscribe`), run as separate processes, against a running service."""

from __future__ import annotations

import asyncio
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


def _client_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A client application certificate as a PLC or SCADA makes one (asyncua's client URI)."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier("urn:example.org:FreeOpcUa:opcua-asyncio")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.der").write_bytes(cert.public_bytes(Encoding.DER))
    (folder / f"{name}.pem").write_bytes(dump_private_key_as_pem(key))
    return folder / f"{name}.der", folder / f"{name}.pem"


def test_signed_and_encrypted_trusted_clients_and_certificate_users(tmp_path: Path) -> None:
    plc_cert, plc_key = _client_certificate(tmp_path / "plc", "plc-app")
    other_cert, other_key = _client_certificate(tmp_path / "scada", "scada-app")
    port = free_port()
    cfg = load_config(write_config(
        tmp_path / "s.yaml", fast_recipe(tmp_path / "recipes" / "part"), console=False,
        cameras=[{"name": "cam0", "source": {"kind": "synthetic", "width": 64, "height": 64,
                                             "triggered": True}}],
        opcua={"enabled": True, "port": port, "users": [PLC[0]], "security": {},
               "certificate_users": {"plc-line3": str(plc_cert)}}))
    UserStore(cfg.storage.resolve(cfg.web.users_file)).add(PLC[0], "operator", PLC[1])
    service = Service(cfg)
    service.start()
    server = OpcUaServer(service, cfg)
    server.start()
    state = tmp_path / "state" / "opcua"
    st = Station(service, server.url, tmp_path / "recipes")
    try:
        assert (state / "server-cert.der").exists() and (state / "server-key.pem").exists()
        assert (state / "server-key.pem").stat().st_mode & 0o077 == 0
        # no unencrypted endpoint any more
        r = ua("uaread", st, "-n", "ns=2;s=Inspector.SystemState")
        assert r.returncode != 0
        sec = ["--security", f"Basic256Sha256,SignAndEncrypt,{plc_cert},{plc_key}"]
        # an encrypted channel from a client nobody trusted yet: refused, its cert kept
        r = ua("uaread", st, *sec, "-n", "ns=2;s=Inspector.SystemState")
        assert r.returncode != 0 and "BadCertificateUntrusted" in r.stdout + r.stderr, (
            r.stdout + r.stderr)[-800:]
        (rejected,) = list((state / "rejected").iterdir())
        rejected.rename(state / "trusted" / rejected.name)  # the integrator trusts it
        assert read_with(st, sec) == "Ready"  # user name and password on a secure channel
        # the certificate itself as the user (X509 identity token), no password: uaread
        # cannot send one, asyncua's client object can
        assert asyncio.run(_x509_read(st.url, plc_cert, plc_key)) == "Ready"
        # a trusted application whose certificate is no user: a password, or nothing
        (state / "trusted" / "scada.der").write_bytes(other_cert.read_bytes())
        other = ["--security", f"Basic256Sha256,SignAndEncrypt,{other_cert},{other_key}"]
        assert read_with(st, other) == "Ready"
        with pytest.raises(Exception, match="BadUserAccessDenied"):
            asyncio.run(_x509_read(st.url, other_cert, other_key))
    finally:
        server.stop()
        service.stop()


async def _x509_read(url: str, cert: Path, key: Path) -> str:
    from asyncua import Client
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from asyncua.ua import MessageSecurityMode

    client = Client(url)
    await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                              mode=MessageSecurityMode.SignAndEncrypt)
    await client.load_client_certificate(str(cert))  # the user token: this certificate
    await client.load_private_key(str(key))
    async with client:
        return str(await client.get_node("ns=2;s=Inspector.SystemState").read_value())


def read_with(st: Station, sec: list[str], who: tuple[str, str] | None = PLC) -> str:
    r = ua("uaread", st, *sec, "-n", "ns=2;s=Inspector.SystemState", who=who)
    assert r.returncode == 0, (r.stdout + r.stderr)[-800:]
    return r.stdout.strip()


def test_security_refuses_half_a_certificate_pair_and_users_without_it(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from inspector.config.sections import OpcUaConfig

    with pytest.raises(ValidationError, match="certificate_users needs security"):
        OpcUaConfig.model_validate({"certificate_users": {"plc": "plc.der"}})
    cfg = load_config(write_config(
        tmp_path / "s.yaml", fast_recipe(tmp_path / "recipes" / "part"), console=False,
        opcua={"enabled": True, "port": free_port(), "users": [PLC[0]], "security": {}}))
    cert = tmp_path / "state" / "opcua" / "server-cert.der"
    cert.parent.mkdir(parents=True)
    cert.write_bytes(b"installed by someone")
    service = Service(cfg)
    service.start()
    try:
        with pytest.raises(RuntimeError, match="server-cert.der exists but .*server-key.pem"):
            OpcUaServer(service, cfg).start()
        assert cert.read_bytes() == b"installed by someone"  # never replaced
    finally:
        service.stop()
