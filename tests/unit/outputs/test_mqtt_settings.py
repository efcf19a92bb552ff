"""MQTT config, topics, schemas and command validation (no broker needed)."""

from __future__ import annotations

import json
import threading
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from inspector.config.mqtt import MqttConfig, PasswordError
from inspector.outputs.mqtt import schemas
from inspector.outputs.mqtt.commands import RecipeCommands
from inspector.outputs.mqtt.sink import plc_payload
from inspector.outputs.mqtt.topics import Topics
from tests.helpers.mqtt_fixtures import make_result

pytestmark = pytest.mark.timeout(30)


def test_defaults_and_stable_client_id() -> None:
    cfg = MqttConfig()
    assert cfg.prefix == "inspector/v1" and cfg.port == 1883 and cfg.tls is None
    a = cfg.effective_client_id("plant1", "line3", "st2")
    assert a == cfg.effective_client_id("plant1", "line3", "st2")
    assert a != cfg.effective_client_id("plant1", "line3", "st3")
    assert MqttConfig(client_id="fixed").effective_client_id("a", "b", "c") == "fixed"


@pytest.mark.parametrize("prefix", ["inspector//v1", "/inspector", "a+b", "x/#", "sp ace", ""])
def test_prefix_levels_are_checked(prefix: str) -> None:
    with pytest.raises(ValidationError, match="topic level"):
        MqttConfig(prefix=prefix)


@pytest.mark.parametrize("bad", [
    {"tls": {"cert": "c.pem"}},
    {"password_file": "p", "password_env": "X", "username": "u"},
    {"password_env": "X"},
    {"reconnect_min_s": 5, "reconnect_max_s": 1},
    {"passwd": "oops"},
    {"port": 0},
])
def test_invalid_configs_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        MqttConfig.model_validate(bad)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = MqttConfig.model_validate(
        {"username": "u", "password_file": "secret.txt",
         "tls": {"ca": "pki/ca.crt", "cert": "pki/c.crt", "key": "/abs/c.key"}},
        context={"file": tmp_path / "station.yaml"})
    assert cfg.password_file == tmp_path / "secret.txt"
    assert cfg.tls is not None and cfg.tls.ca == tmp_path / "pki/ca.crt"
    assert cfg.tls.key == Path("/abs/c.key")


def test_password_is_read_late_and_never_shown(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Tr0ub4dor-s3cret"
    pw = tmp_path / "pw"
    pw.write_text(secret + "\n")
    cfg = MqttConfig(username="inspector", password_file=pw)
    assert cfg.read_password() == secret
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), cfg.password_source()):
        assert secret not in text
    pw.unlink()
    with pytest.raises(PasswordError, match=str(pw)):
        cfg.read_password()
    monkeypatch.setenv("INSPECTOR_MQTT_PW", secret)
    env_cfg = MqttConfig(username="inspector", password_env="INSPECTOR_MQTT_PW")
    assert env_cfg.read_password() == secret and secret not in repr(env_cfg)
    monkeypatch.delenv("INSPECTOR_MQTT_PW")
    with pytest.raises(PasswordError, match="INSPECTOR_MQTT_PW"):
        env_cfg.read_password()


def test_topics() -> None:
    t = Topics.for_station("inspector/v1", "plant1", "line3", "st2")
    assert t.root == "inspector/v1/plant1/line3/st2/"
    assert t.result == t.root + "result" and t.cmd_recipe_ack == t.root + "cmd/recipe/ack"
    assert t.camera_status("cam_0") == t.root + "camera/cam_0/status"
    assert t.schema_name(t.camera_status("cam0")) == "camera_status"
    assert t.schema_name(t.cmd_recipe) == "cmd_recipe"
    assert t.schema_name("other/topic") is None
    for bad in ("a/b", "+", "#", "", "x y"):
        with pytest.raises(ValueError):
            t.camera_status(bad)
        with pytest.raises(ValueError):
            Topics.for_station("inspector/v1", bad, "l", "s")


def test_every_schema_ships_and_is_valid() -> None:
    shipped = {p.name for p in resources.files("inspector.outputs.schemas").iterdir()}
    for name in schemas.NAMES:
        assert f"{name}.schema.json" in shipped
        schemas.validator(name)  # check_schema raises on an invalid schema
    result = make_result("s", 4)
    assert schemas.first_error("result", result.payload()) is None
    plc = plc_payload(result)
    assert plc == {"part_id": "P000004", "ok": False, "code": 11, "seq": 4,
                   "event_id": result.event_id, "session": "s", "replayed": False}
    assert schemas.first_error("plc", plc) is None
    assert schemas.first_error("plc", {**plc, "extra": 1}) is not None
    assert schemas.first_error("status", "online") is None
    assert schemas.first_error("status", "rebooting") is not None


class _Acks:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def __call__(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))


@pytest.mark.parametrize(("payload", "rid", "needle"), [
    (b"{not json", None, "malformed JSON"),
    (b"\xff\xfe", None, "malformed JSON"),
    (b"[1, 2]", None, "invalid command"),
    (b'{"request_id": "r1"}', "r1", "recipe_id"),
    (b'{"request_id": "r2", "recipe_id": "../../etc"}', "r2", "recipe_id"),
    (b'{"request_id": "r3", "recipe_id": "p", "rev": "7"}', "r3", "rev"),
    (b'{"request_id": "r4", "recipe_id": "p", "extra": 1}', "r4", "extra"),
    (b'{"recipe_id": "p"}', None, "request_id"),
])
def test_bad_commands_get_error_acks(payload: bytes, rid: str | None, needle: str) -> None:
    calls: list = []
    cmds = RecipeCommands("t", _Acks(), handler=lambda r, v: calls.append((r, v)) or {})
    ack = cmds.handle(payload)
    assert ack["ok"] is False and ack["request_id"] == rid and needle in ack["error"]
    assert schemas.first_error("cmd_recipe_ack", ack) is None
    assert calls == []  # nothing changed


def test_handler_result_and_refusal() -> None:
    def handler(recipe_id: str, rev: int | None) -> dict:
        if recipe_id != "gear":
            raise KeyError(f"unknown recipe {recipe_id!r}")
        if rev not in (None, 4):
            raise ValueError(f"recipe 'gear' is at rev 4, not {rev}")
        return {"id": "gear", "rev": 4, "sha256": "cd" * 32, "extra": "not forwarded"}

    cmds = RecipeCommands("t", _Acks(), handler=handler)
    ok = cmds.handle(b'{"request_id": "a", "recipe_id": "gear"}')
    assert ok == {"request_id": "a", "ok": True,
                  "recipe": {"id": "gear", "rev": 4, "sha256": "cd" * 32}}
    unknown = cmds.handle(b'{"request_id": "b", "recipe_id": "nut"}')
    assert unknown == {"request_id": "b", "ok": False, "error": "unknown recipe 'nut'"}
    wrong_rev = cmds.handle(b'{"request_id": "c", "recipe_id": "gear", "rev": 2}')
    assert wrong_rev["error"] == "recipe 'gear' is at rev 4, not 2"
    none = RecipeCommands("t", _Acks()).handle(b'{"request_id": "d", "recipe_id": "gear"}')
    assert none["ok"] is False and "not available" in none["error"]
    for ack in (ok, unknown, wrong_rev, none):
        assert schemas.first_error("cmd_recipe_ack", ack) is None


def test_worker_thread_runs_the_handler() -> None:
    seen: list[str] = []
    acks = _Acks()
    cmds = RecipeCommands("x/cmd/recipe", acks, handler=lambda r, v: seen.append(
        threading.current_thread().name) or {"id": r, "rev": 1, "sha256": "e" * 64})

    class Msg:
        topic, retain, payload = "x/cmd/recipe", False, b'{"request_id":"w","recipe_id":"a"}'

    class Retained(Msg):
        retain = True

    cmds.start()
    try:
        cmds.offer(Retained())  # type: ignore[arg-type]
        cmds.offer(Msg())  # type: ignore[arg-type]
        for _ in range(200):
            if acks.sent:
                break
            threading.Event().wait(0.01)
    finally:
        cmds.close()
    assert seen == ["mqtt-commands"] and cmds.ignored_retained == 1
    assert [a["request_id"] for a in acks.sent] == ["w"]
