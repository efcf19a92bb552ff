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
