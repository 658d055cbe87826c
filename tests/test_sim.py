"""The simulator: streamed (bounded memory, any duration), world scripts, ground truth,
field conditions, and the fleet through the streaming core."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest

from streambind.sim.kafka_io import read_topic
from streambind.sim.simulator import (
    ACTIVITIES,
    Backlog,
    SimStats,
    TruthWriter,
    generate,
    script,
    simulate,
    stream,
)
from streambind.sim.streams import aligned_origin_ns
from streambind.stream.chunks import MODALITIES
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.records import decode_record
from streambind.stream.runner import StreamRunner

S = 1_000_000_000


def test_script_covers_the_duration_with_known_activities():
    segs = script("dev-000", 0, 60.0, seed=1)
    assert segs[0][0] == 0 and segs[-1][1] == 60 * S
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
    assert {name for _, _, name in segs} <= set(ACTIVITIES)
    assert all(a[2] != b[2] for a, b in zip(segs, segs[1:], strict=False))
    assert script("dev-000", 0, 60.0, seed=1) == segs  # deterministic
    assert script("dev-001", 0, 60.0, seed=1) != segs


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


def test_generation_is_deterministic_per_seed():
    a = generate(2, 3.0, seed=4, start_ns=0)
    b = generate(2, 3.0, seed=4, start_ns=0)
    c = generate(2, 3.0, seed=5, start_ns=0)
    assert [r.value for _, _, r in a] == [r.value for _, _, r in b]
    assert [r.value for _, _, r in a] != [r.value for _, _, r in c]


def test_first_record_of_an_unbounded_run_within_a_second():
    t = time.perf_counter()
    items = stream(4, 0, seed=1)
    first = next(items)
    assert time.perf_counter() - t < 1.0
    assert first[2].startswith("sensors.")
    # Unbounded: it keeps going well past any default duration's first minute of work.
    t0 = first[1]
    for _, ts, _, _ in items:
        if ts - t0 > 5 * S:
            break
    items.close()


def test_memory_stays_bounded_over_a_long_simulated_duration():
    """Five minutes of event time: the traced Python memory stays flat and far below the
    bytes generated (generating up front would hold all of them)."""
    generate(1, 2.0, seed=9, modalities=("audio", "imu"))  # imports and caches first
    items = stream(1, 0, seed=2, start_ns=0, modalities=("audio", "imu"))
    generated = 0
    tracemalloc.start()
    try:
        marks = []
        for horizon_s in (100, 300):
            tracemalloc.reset_peak()
            for _, ts, _, rec in items:
                generated += len(rec.value)
                if ts >= horizon_s * S:
                    break
            marks.append(tracemalloc.get_traced_memory())  # (current, peak)
    finally:
        tracemalloc.stop()
        items.close()
    (current_100, _), (current_300, peak) = marks
    assert generated > 30_000_000
    assert current_300 < current_100 + 500_000, marks  # flat
    assert peak < generated / 4, (peak, generated)  # bounded by a chunk's work, not the run


def test_truth_lines_match_what_was_sent():
    out = io.StringIO()
    stats = SimStats()
    t0 = aligned_origin_ns()
    items = generate(2, 40.0, seed=6, start_ns=t0, truth=TruthWriter(out), stats=stats,
                     drop_share=0.0, clock_offsets_s={"dev-001": 30.0})
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert {tuple(x) for x in [(r["device_id"], r["start_ns"], r["end_ns"], r["activity"])
                               for r in lines]} == set(stats.activities)
    by_device: dict[str, list[dict]] = {}
    for row in lines:
        assert set(row) == {"device_id", "start_ns", "end_ns", "activity"}
        assert row["activity"] in ACTIVITIES
        by_device.setdefault(row["device_id"], []).append(row)
    assert set(by_device) == {"dev-000", "dev-001"}
    for device, rows in by_device.items():
        shift = 30 * S if device == "dev-001" else 0
        assert rows[0]["start_ns"] == t0 + shift and rows[-1]["end_ns"] == t0 + 40 * S + shift
        assert all(a["end_ns"] == b["start_ns"] for a, b in zip(rows, rows[1:], strict=False))
    # Every record's event time (the device clock) lies in one of its device's segments.
    now = time.time_ns() + 3600 * S
    for _, topic, rec in items:
        chunks = decode_record(topic.split(".")[1], rec.key, rec.value, rec.headers,
                               partition=0, offset=0, now_ns=now)
        for chunk in chunks:
            rows = by_device[chunk.device_id]
            assert rows[0]["start_ns"] - 5_000_000 <= chunk.ts_ns < rows[-1]["end_ns"] + 5_000_000


def test_backlog_upload_sends_the_buffered_records_when_the_device_returns():
    t0 = 0
    plain = generate(2, 20.0, seed=8, start_ns=t0, drop_share=0.0, reorder_share=0.0)
    sent = list(stream(2, 20.0, seed=8, start_ns=t0, drop_share=0.0, reorder_share=0.0,
                       backlogs=[Backlog("dev-001", 5.0, 8.0)]))
    assert sorted(r.value for _, _, r in plain) == sorted(r.value for _, _, _, r in sent)
    offline = [(send, ts) for send, ts, _, r in sent
               if r.key == b"dev-001" and 5 * S <= ts < 13 * S]
    assert offline and all(send == 13 * S for send, _ in offline)
    # The upload comes in one burst, after other devices' records of the outage.
    positions = [i for i, (_, ts, _, r) in enumerate(sent)
                 if r.key == b"dev-001" and 5 * S <= ts < 13 * S]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    before = [ts for _, ts, _, r in sent[: positions[0]] if r.key == b"dev-000"]
    assert max(before) >= 12.9 * S


def _simulate_cli(bootstrap: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streambind", "simulate", "--bootstrap", bootstrap, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.broker
def test_unbounded_simulation_streams_live_and_stops_on_signal(bootstrap, make_topic, tmp_path):
    truth = tmp_path / "truth.jsonl"
    topic = "sensors.audio"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = _simulate_cli(bootstrap, "--devices", "2", "--duration", "0", "--realtime",
                             "--modalities", "audio", "imu", "--truth", str(truth))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    truth.exists() and truth.read_text().count("\n") >= 2):
                time.sleep(0.2)  # each device writes its first segment when it starts
            lines = [json.loads(x) for x in truth.read_text().splitlines()]
            assert {x["device_id"] for x in lines} == {"dev-000", "dev-001"}
            records = read_topic(bootstrap, topic, until=lambda r: len(r) >= 10, timeout_s=30)
            assert len(records) >= 10  # streamed while running, not at the end
            time.sleep(1.0)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["stopped"] is True and summary["records"]["audio"] > 0


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


