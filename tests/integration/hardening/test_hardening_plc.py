"""Issue 16, deliverable 8: PLC codes unique within a recipe, 0 and 65535 reserved, checked
by `inspector validate`, `recipe validate` and `recipe add-prompt`; `plc` messages carry
event_id, session and replayed so a PLC can drop a replayed duplicate."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.outputs.mqtt.sink import MqttSink
from tests.helpers.files import RECIPE, write_recipe
from tests.helpers.hardening import cli
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import (
    LINE,
    SITE,
    STATION,
    TOPICS,
    Collector,
    config,
    make_result,
    needs_mosquitto,
    wait_until,
)


def _recipe(tmp_path: Path, codes: list[int], unknown: int = 90) -> Path:
    doc = copy.deepcopy(RECIPE)
    for c, code in zip(doc["classes"], codes, strict=True):
        c["plc_code"] = code
    doc["unknown"]["plc_code"] = unknown
    return write_recipe(tmp_path / f"r{'-'.join(map(str, codes))}-{unknown}", doc)


@pytest.mark.parametrize("codes,unknown,words", [
    ([11, 11, 13], 90, "PLC codes (a PLC tells defects apart by them) must be unique; "
                       "repeated: 11"),
    ([11, 65535, 13], 90, "less than or equal to 65534"),
    ([11, 0, 13], 90, "greater than or equal to 1"),
    ([11, 12, 13], 12, "unknown.plc_code 12 is also the code of class 'pit'"),
    ([11, 12, 13], 65535, "less than or equal to 65534"),
])
def test_duplicate_and_reserved_plc_codes_are_refused_by_every_validator(
        tmp_path: Path, capsys: pytest.CaptureFixture, codes: list[int], unknown: int,
        words: str) -> None:
    folder = _recipe(tmp_path, codes, unknown)
    assert cli("validate", str(folder)) == 1
    err = capsys.readouterr().err
    assert words in err and "recipe.yaml:" in err, err
    assert cli("recipe", "validate", str(folder)) != 0
    assert words in capsys.readouterr().err
    print(f"NOW plc codes {codes} unknown {unknown}: refused: {words}")


def test_add_prompt_with_a_taken_plc_code_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _recipe(tmp_path, [11, 12, 13])
    before = (folder / "recipe.yaml").read_bytes()
    img = tmp_path / "ng.png"
    cv2.imwrite(str(img), np.full((64, 64), 100, np.uint8))
    for code in ("12", "65535"):
        rc = cli("recipe", "add-prompt", str(folder), str(img), "--box", "10,10,8,8",
                 "--class", "burr", "--plc-code", code)
        assert rc != 0
        err = capsys.readouterr().err
        assert "12" in err or "65534" in err, err
    assert (folder / "recipe.yaml").read_bytes() == before
    assert cli("recipe", "add-prompt", str(folder), str(img), "--box", "10,10,8,8",
               "--class", "burr", "--plc-code", "17") == 0


@needs_mosquitto
def test_plc_messages_carry_event_id_session_and_replayed(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")  # down: results stay in the outbox
    cfg = config(broker, tmp_path)
    first = MqttSink(cfg, SITE, LINE, STATION, "sess-a")
    sent = [make_result("sess-a", i) for i in range(5)]
    for r in sent:
        first.emit(r)
    first.close()
    with broker:
        col = Collector(broker)
        second = MqttSink(cfg, SITE, LINE, STATION, "sess-b")
        try:
            second.emit(make_result("sess-b", 0))
            assert wait_until(lambda: col.count(TOPICS.plc) >= 6, 15)
        finally:
            second.close()
        plcs = col.docs(TOPICS.plc)
        assert col.errors == []
        old = [p for p in plcs if p["session"] == "sess-a"]
        assert [p["event_id"] for p in old] == [r.event_id for r in sent]
        assert all(p["replayed"] for p in old)
        new = [p for p in plcs if p["session"] == "sess-b"]
        assert len(new) == 1 and new[0]["replayed"] is False
        print("NOW plc after an outage: every message has event_id, session, replayed=true "
              "for the replays")
        col.stop()
