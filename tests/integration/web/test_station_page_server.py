"""The station page's server: off by default, loopback by default, TLS when configured,
and it goes away with the service."""

from __future__ import annotations

import ssl
import threading
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from inspector.config.sections import WebConfig
from inspector.config.station import load_config
from inspector.runtime.service import Service
from inspector.web.server import WebServer
from tests.helpers.files import write_config, write_recipe
from tests.helpers.mosquitto import make_certs


def test_off_and_on_loopback_unless_configured(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "s.yaml", write_recipe(tmp_path / "r")))
    assert cfg.web.enabled is False and cfg.web.host == "127.0.0.1"
    assert cfg.opcua.enabled is False and cfg.opcua.allow_anonymous is False
    with pytest.raises(ValidationError, match="tls_cert and tls_key go together"):
        WebConfig(tls_cert=tmp_path / "c.pem")


def test_tls_page_with_a_secure_session_cookie(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "pki")
    cfg = load_config(write_config(
        tmp_path / "s.yaml", write_recipe(tmp_path / "r"), console=False,
        web={"enabled": True, "port": 0, "tls_cert": str(certs.server_cert),
             "tls_key": str(certs.server_key)}))
    service = Service(cfg)
    service.start()
    web = WebServer.attach(service, cfg)
    web.start()
    try:
        assert web.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        with urllib.request.urlopen(web.url + "login", context=ctx, timeout=10) as r:
            assert r.status == 200
            cookie = r.headers["set-cookie"]
        assert "inspector_session=" in cookie and "secure" in cookie.lower()
        assert "samesite=strict" in cookie.lower() and "httponly" in cookie.lower()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain http
            urllib.request.urlopen(web.url.replace("https", "http") + "login", timeout=5)
    finally:
        web.stop()
        service.stop()
    assert not web.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "web"]


def test_image_uri_is_a_url_served_to_page_users_only(tmp_path: Path) -> None:
    import base64
    import socket
    import time

    from inspector.web.users import UserStore
    from tests.helpers.standins import FAST_CAMERA, fast_recipe

    with socket.socket() as s:  # a fixed port: the URL in image_uri must name it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cam = {**FAST_CAMERA, "defect_rate": 1.0, "rate_hz": 20, "seed": 2}
    cfg = load_config(write_config(
        tmp_path / "s.yaml", fast_recipe(tmp_path / "r"), console=False,
        cameras=[{"name": "cam0", "source": cam}], web={"enabled": True, "port": port}))
    UserStore(cfg.storage.resolve(cfg.web.users_file)).add("mes", "operator", "mes-password")
    got: list = []
    service = Service(cfg, on_result=got.append)
    service.start()
    web = WebServer.attach(service, cfg)
    web.start()
    try:
        deadline = time.monotonic() + 30
        while not any(f.result.verdict == "NG" for f in got) and time.monotonic() < deadline:
            time.sleep(0.05)
        uri = next(f.result.image_uri for f in got if f.result.verdict == "NG")
        assert uri and uri.startswith(f"http://127.0.0.1:{port}/archive/overlays/"), (
            [(f.result.verdict, f.result.image_uri) for f in got], service.stats()["counters"])
        time.sleep(0.5)  # the archive thread writes the file

        def get(url: str, auth: tuple[str, str] | None = None):
            req = urllib.request.Request(url)
            if auth:
                token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                req.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read()

        status, headers, _ = get(uri)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(uri, ("mes", "wrong-password"))[0] == 401
        status, headers, body = get(uri, ("mes", "mes-password"))
        assert status == 200 and body[:4] == b"\x89PNG"
        base = f"http://127.0.0.1:{port}/archive/"
        for bad in ("overlays/2026-01-01/nope.png", "etc/2026-01-01/x.png",
                    "overlays/..%2F..%2F/x.png", "overlays/2026-01-01/..%2Fusers.json"):
            assert get(base + bad, ("mes", "mes-password"))[0] == 404, bad
    finally:
        web.stop()
        service.stop()
