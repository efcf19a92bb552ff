"""The two-minute soak (issue 11), run in CI: the whole service on a synthetic camera at a
fixed rate, the broker restarted every 40 s. After a 30 s warm-up RSS may not grow by
more than 5 %, every accepted result must come back out of the broker, and the outbox
must be empty at the end. The one-hour version is
`inspector bench --rate 4 --seconds 3540 --warmup 60 --restart-broker-every 600 --soak`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bench.run import BenchSettings, run_bench
from tests.helpers.mqtt_fixtures import needs_mosquitto

RATE_HZ, WARMUP_S, SECONDS, RESTART_S = 4.0, 30.0, 90.0, 40.0


@needs_mosquitto
@pytest.mark.soak
@pytest.mark.timeout(420)
def test_two_minute_soak_with_broker_restarts(tmp_path: Path):
    report = run_bench(BenchSettings(rate_hz=RATE_HZ, seconds=SECONDS, warmup_s=WARMUP_S,
                                     restart_broker_every_s=RESTART_S, alone_frames=5,
                                     soak=True, progress=False), tmp_path / "soak")
    f = report["figures"]
    assert f["broker_restarts"] >= 2 and f["broker_restart_failures"] == 0
    # the camera ran at its rate, not merely "something was inspected"
    assert f["results"] >= 0.7 * RATE_HZ * (WARMUP_S + SECONDS), f
    assert f["lost"] == 0 and f["received"] == f["accepted"], f
    assert f["outbox_pending"] == 0, f
    assert f["rss"]["growth_pct"] is not None and f["rss"]["growth_pct"] <= 5.0, f["rss"]
    assert report["soak"]["pass"], report["soak"]
    assert (tmp_path / "soak" / "bench.md").read_text().count("**Soak: PASS**") == 1
