"""The live view keeps bounded copies: the last parts, recent NG, sampled OK."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from inspector.decision.verdict import Verdict
from inspector.runtime.pipeline import Finished
from inspector.web.live import LAST_PARTS, LiveView, jpeg
from tests.helpers.mqtt_fixtures import make_result


def _finished(seq: int, ok: bool, buf: np.ndarray) -> Finished:
    buf[:] = seq % 256  # the pool reuses the buffer for the next frame
    return Finished(SimpleNamespace(image=buf), make_result("s", seq, ok=ok), [],
                    Verdict(ok, 0 if ok else 11, 0.1, [], []), (0, 0))


def test_bounded_copies_of_recent_parts() -> None:
    live = LiveView(recent=5, results=50, ok_every=10)
    buf = np.zeros((32, 48), np.uint8)
    items = []
    for i in range(100):
        items.append(_finished(i, ok=i % 3 != 0, buf=buf))
        live.observe(items[-1])
    ng = live.recent_ng()
    assert [p.result.seq for p in ng] == [99, 96, 93, 90, 87]  # newest first, 5 kept
    assert all(int(p.image[0, 0]) == p.result.seq % 256 for p in ng)  # copies, not the buffer
    assert len(live.recent_results()) == 50 and live.recent_results()[-1].seq == 99
    assert abs(live.ng_rate() - 17 / 50) < 1e-9
    assert 1 <= len(live.sampled_ok()) <= 5
    assert all(p.result.verdict == "OK" for p in live.sampled_ok())
    assert live.part(items[-1].result.event_id) is not None
    assert live.part(items[100 - LAST_PARTS].result.event_id) is not None
    assert live.part(items[1].result.event_id) is None  # an old OK part is gone
    assert jpeg(live.part(items[-2].result.event_id), overlay=True)[:2] == b"\xff\xd8"
