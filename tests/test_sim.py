"""The simulator feeds the streaming core end to end: windows out, malformed to the DLQ."""

from __future__ import annotations

import json
import time

import pytest

from streambind.sim.kafka_io import read_topic
from streambind.sim.simulator import ACTIVITIES, SimStats, generate, script, simulate
from streambind.sim.streams import aligned_origin_ns
from streambind.stream.chunks import MODALITIES
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.records import decode_record
from streambind.stream.runner import StreamRunner

S = 1_000_000_000


def test_script_covers_the_duration_with_known_activities():
    segs = script("dev-000", 0, 30.0, seed=1)
    assert segs[0][0] == 0 and segs[-1][1] == 30 * S
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
    assert {name for _, _, name in segs} <= set(ACTIVITIES)
    assert script("dev-000", 0, 30.0, seed=1) == segs  # deterministic


def test_generated_records_decode_and_malformed_share_is_respected():
    t0 = aligned_origin_ns()
    stats = SimStats()
    items = generate(2, 4.0, malformed_share=0.05, seed=3, start_ns=t0, drop_share=0.0,
                     stats=stats)
    now = time.time_ns()
    bad = 0
    for _, topic, rec in items:
        modality = topic.split(".")[1]
        try:
            decode_record(modality, rec.key, rec.value, rec.headers, partition=0, offset=0,
                          now_ns=now)
        except Exception:  # noqa: BLE001 - counted
            bad += 1
    assert bad == stats.malformed == round(0.05 * sum(stats.records.values()))
    assert {t.split(".")[1] for _, t, _ in items} == set(MODALITIES)


@pytest.mark.broker
def test_simulated_fleet_through_the_core(bootstrap, make_topic):
    topics = {m: make_topic(f"sensors.{m}") for m in MODALITIES}
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"sim-{topics['audio']}", topics=topics,
        events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), idle_timeout_s=1.0,
        session_timeout_ms=2000, commit_interval_s=0.2, model="stand-in",
    )
    stats = simulate(bootstrap, 2, 12.0, start_ns=aligned_origin_ns(), topics=topics,
                     malformed_share=0.01, seed=7)
    assert stats.malformed > 0
    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        dlq: list = []
        while time.monotonic() < deadline and len(dlq) < stats.malformed:
            time.sleep(0.5)
            dlq = read_topic(bootstrap, cfg.dlq_topic, idle_s=0.2, timeout_s=2)
        time.sleep(3)  # let idle windows close
    finally:
        runner.stop()
    assert len(dlq) == stats.malformed
    events = [json.loads(e.value) for e in read_topic(bootstrap, cfg.events_topic, idle_s=0.5)]
    by_modality = {}
    for ev in events:
        by_modality.setdefault(ev["modality"], set()).add(ev["event_id"])
    assert set(by_modality) == set(MODALITIES)
    # 12 s of audio with a 1 s hop: about 11 full windows per device survive drops/jitter.
    assert len(by_modality["audio"]) >= 2 * 9
