"""The running service over a real broker: results, retained state, recipe commands.

Every message the subscriber sees is validated against its schema (Collector).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

from inspector.config.station import load_config
from inspector.runtime.service import Service
from tests.helpers.files import REPO, write_config
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import (
    TOPICS,
    Collector,
    dumps,
    needs_mosquitto,
    publish_raw,
    wait_until,
)

pytestmark = needs_mosquitto


def station(tmp_path: Path, broker: Broker) -> Service:
    recipes = tmp_path / "recipes"
    shutil.copytree(REPO / "recipes" / "demo", recipes / "demo")
    other = recipes / "demo-b"
    shutil.copytree(REPO / "recipes" / "demo", other)
    text = (other / "recipe.yaml").read_text()
    (other / "recipe.yaml").write_text(
        re.sub(r"^rev: \d+", "rev: 7", text.replace("id: demo-part", "id: demo-b"),
               count=1, flags=re.M))  # whatever the demo's own rev
    bad = recipes / "broken"
    shutil.copytree(REPO / "recipes" / "demo", bad)
    (bad / "recipe.yaml").write_text(text.replace("id: demo-part", "id: broken\nfoo: 1"))
    cfg = write_config(
        tmp_path / "station.yaml", recipes / "demo",
        cameras=[{"name": "cam0", "source": {"kind": "synthetic", "seed": 2, "rate_hz": 8}}],
        console=False, stats_interval_s=0.5,
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2,
              "outbox": {"path": "outbox.sqlite"}},
    )
    return Service(load_config(cfg))


def test_service_publishes_and_switches_recipe(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        sub = Collector(broker)
        svc = station(tmp_path, broker)
        svc.start()
        main = threading.Thread(target=svc.run_until_stopped)  # the service's main loop
        main.start()
        try:
            assert wait_until(lambda: len(sub.results()) >= 3, 60)
            assert sub.last(TOPICS.status) == "online"
            assert sub.last(TOPICS.state)["recipe"]["id"] == "demo-part"
            assert sub.last(TOPICS.camera_status("cam0")) == "online"
            assert wait_until(lambda: sub.count(TOPICS.stats) >= 1, 10)

            def ack(request_id: str) -> dict | None:
                acks = [a for a in sub.docs(TOPICS.cmd_recipe_ack)
                        if a["request_id"] == request_id]
                return acks[-1] if acks else None

            # refused: unknown recipe, invalid recipe, wrong rev; the running recipe stays
            for rid, cmd, words in (
                ("r1", {"recipe_id": "nope"}, "unknown recipe 'nope'"),
                ("r2", {"recipe_id": "broken"}, "foo: unknown key"),
                ("r3", {"recipe_id": "demo-b", "rev": 9}, "rev 7, not 9"),
            ):
                publish_raw(broker, TOPICS.cmd_recipe, dumps({"request_id": rid, **cmd}))
                assert wait_until(lambda rid=rid: ack(rid) is not None, 30), rid
                a = ack(rid)
                assert a["ok"] is False and words in a["error"], a
            assert svc.pipeline.active.recipe.id == "demo-part"

            publish_raw(broker, TOPICS.cmd_recipe, dumps({"request_id": "r4",
                                                          "recipe_id": "demo-b", "rev": 7}))
            assert wait_until(lambda: ack("r4") is not None, 120)  # enrols demo-b
            a = ack("r4")
            assert a["ok"] is True and a["recipe"]["id"] == "demo-b" and a["recipe"]["rev"] == 7
            assert wait_until(lambda: sub.results()[-1]["recipe"]["id"] == "demo-b", 30)
            assert sub.last(TOPICS.state)["recipe"] == a["recipe"]
        finally:
            svc.stop()
            main.join(10)
        assert wait_until(lambda: sub.last(TOPICS.status) == "stopped", 10)
        time.sleep(0.3)
        sub.stop()
        assert sub.errors == []
        ids = [r["recipe"]["id"] for r in sub.results()]
        switch = ids.index("demo-b")
        assert set(ids[:switch]) == {"demo-part"} and set(ids[switch:]) == {"demo-b"}
        local = [json.loads(s) for s in (tmp_path / "state" / "results.jsonl").read_text()
                 .splitlines()]
        assert {r["event_id"] for r in local} == sub.event_ids()  # every result published
        seqs = [r["seq"] for r in sub.results()]
        assert seqs == sorted(seqs)
