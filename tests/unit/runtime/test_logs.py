"""Logging: key=value lines (journald priorities under systemd), one line per record,
and secrets never printed, neither by a stray log call nor by the running service."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.runtime import logs
from tests.helpers.files import REPO, write_config
from tests.helpers.standins import FAST_CAMERA, fast_recipe

SECRET = "Zq9-secret-pw-8317"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    buf = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    handler = logs.setup("DEBUG", buf)
    yield logging.getLogger("inspector.test"), buf
    root.removeHandler(handler)
    root.setLevel(old_level)


def parse(line: str) -> dict[str, str]:
    """A small logfmt reader: key=value, values quoted with \\-escapes."""
    out, i = {}, 0
    while i < len(line):
        eq = line.index("=", i)
        key = line[i:eq]
        j = eq + 1
        if j < len(line) and line[j] == '"':
            val, j = [], j + 1
            while line[j] != '"':
                if line[j] == "\\":
                    val.append({"n": "\n", "t": "\t", "r": "\r"}.get(line[j + 1], line[j + 1]))
                    j += 2
                else:
                    val.append(line[j])
                    j += 1
            out[key], i = "".join(val), j + 2
        else:
            end = line.find(" ", j)
            end = len(line) if end < 0 else end
            out[key], i = line[j:end], end + 1
    return out


def test_key_value_lines_round_trip(captured) -> None:
    log, buf = captured
    log.info("camera %s: %s", "cam0", 'said "hi"\nand left', extra={"kv": {"frames": 3}})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # the traceback stays on its line
    first = parse(lines[0])
    assert first["level"] == "info" and first["logger"] == "inspector.test"
    assert first["msg"] == 'camera cam0: said "hi"\nand left' and first["frames"] == "3"
    assert first["ts"].endswith("Z") and first["thread"] == "MainThread"
    second = parse(lines[1])
    assert second["level"] == "error" and "RuntimeError: boom" in second["exc"]


def test_journal_lines_carry_the_priority_and_no_timestamp() -> None:
    fmt = logs.KeyValueFormatter(journal=True)
    rec = logging.LogRecord("inspector.x", logging.WARNING, __file__, 1, "disk low", (), None)
    line = fmt.format(rec)
    assert line.startswith("<4>level=warning ") and "ts=" not in line


def test_secrets_never_printed(captured) -> None:
    log, buf = captured
    logs.register_secret(SECRET)
    log.info("connecting with %s", SECRET)
    log.warning("config %s", {"username": "st2", "password": "hunter22"})
    log.error("url mqtts://st2:pa55word@broker:8883 token=abc.def.ghi")
    log.info("plain", extra={"kv": {"pw": SECRET}})
    try:
        raise ValueError(f"bad password {SECRET}")
    except ValueError:
        log.exception("refused")
    text = buf.getvalue()
    for leaked in (SECRET, "hunter22", "pa55word", "abc.def.ghi"):
        assert leaked not in text
    assert text.count(logs.MASK) >= 6
    assert "password_file" in logs.redact("password_file=/run/x")  # names are not secrets
    assert logs.redact("password_file=/run/x") == "password_file=/run/x"


def test_running_service_never_logs_the_mqtt_password(tmp_path: Path) -> None:
    """The real service, DEBUG logging, a broker that refuses the password."""
    from tests.helpers.mosquitto import Broker, mosquitto_binary

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text(SECRET + "\n")
    with Broker(tmp_path / "broker", passwords={"st2": "the-right-one"}) as broker:
        cfg = write_config(
            tmp_path / "station.yaml", fast_recipe(tmp_path / "recipes" / "test-part"),
            console=False,
            cameras=[{"name": "cam0", "source": {**FAST_CAMERA, "seed": 1, "count": 3}}],
            mqtt={"host": "127.0.0.1", "port": broker.port, "username": "st2",
                  "password_file": str(pw_file), "reconnect_min_s": 0.2,
                  "drain_timeout_s": 1.0})
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        res = subprocess.run([sys.executable, "-m", "inspector.cli.main", "--log-level", "DEBUG",
                              "run", "--config", str(cfg)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "msg=stopped" in out and "level=debug" in out
    assert "refused the connection: Not authorized" in out  # logged ...
    assert SECRET not in out  # ... without the password
