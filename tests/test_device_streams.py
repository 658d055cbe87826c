"""Per-device event time on the real broker: several devices on ONE partition, one with a
clock 30 s behind, one 50 s ahead, one that uploads a backlog after an outage. No window is
lost and no record is counted late (with a per-partition watermark, the device ahead made
every other device's records late, and the backlog was dropped).
"""

from __future__ import annotations

import json
import time

import pytest

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, timed_stream
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker
S = 1_000_000_000
SECONDS = 20
OUTAGE_AT_S = 4  # the backlog device goes silent after its first 4 s (a window boundary)
SKEW_S = {"steady": 0, "behind": -30, "ahead": 50, "backlog": 0}


def _records(t0: int) -> tuple[list, list]:
    """(live, backlog): records in the order a fleet sends them (by true time), and the
    backlog device's records after its outage."""
    live, backlog = [], []
    for device, skew_s in SKEW_S.items():
        for ts, modality, record in timed_stream(device, t0 + skew_s * S, {"audio": SECONDS}):
            true_ts = ts - skew_s * S
            if device == "backlog" and true_ts >= t0 + OUTAGE_AT_S * S:
                backlog.append((true_ts, modality, record))
            else:
                live.append((true_ts, modality, record))
    live.sort(key=lambda x: x[0])
    return live, backlog


def test_skewed_clocks_and_a_backlog_on_one_partition_lose_nothing(bootstrap, make_topic):
    audio = make_topic("sensors.audio")  # one partition: every device shares it
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"skew-{audio}", modalities=("audio",),
        topics={"audio": audio}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), state_topic=make_topic("streambind.state"),
        hop_ms={"audio": 2000}, idle_timeout_s=1.0, session_timeout_ms=2000,
        commit_interval_s=0.2, lag_interval_s=0.2, model="stand-in")
    t0 = aligned_origin_ns()
    live, backlog = _records(t0)
    expected = {(d, t0 + (skew + k * 2) * S) for d, skew in SKEW_S.items()
                for k in range(SECONDS // 2)}

    def windows() -> set[tuple[str, int]]:
        events = read_topic(bootstrap, cfg.events_topic, idle_s=0.3, timeout_s=5)
        return {(e["device_id"], e["window_start_ns"]) for e in map(json.loads,
                                                                     (r.value for r in events))}

    runner = StreamRunner(cfg, StandInEmbedder(dim=8)).start()
    try:
        assert runner.ready.wait(30), "no partition assigned"
        send_records(bootstrap, [(audio, r) for _, _, r in live])
        live_expected = {w for w in expected
                         if w[0] != "backlog" or w[1] < t0 + OUTAGE_AT_S * S}
        deadline = time.monotonic() + 60
        while not windows() >= live_expected:
            assert runner.error is None, runner.error
            assert time.monotonic() < deadline, sorted(live_expected - windows())[:5]
            time.sleep(0.3)
        time.sleep(2 * cfg.idle_timeout_s)  # the outage: longer than the idle timeout
        send_records(bootstrap, [(audio, r) for _, _, r in backlog])  # the upload
        deadline = time.monotonic() + 60
        while not windows() >= expected:
            assert runner.error is None, runner.error
            if time.monotonic() > deadline:
                missing = sorted((d, (t - t0) // S) for d, t in expected - windows())
                pytest.fail(f"windows lost: {missing}; {runner.stats}")
            time.sleep(0.3)
    finally:
        runner.stop()
    assert windows() == expected
    assert runner.stats.records_late == 0
    assert runner.stats.records_dlq == 0 and runner.stats.windows_dropped == 0
