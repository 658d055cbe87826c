"""Integration tests of the streaming core against the real broker (no mocks)."""

from __future__ import annotations

import json
import time

import jsonschema
import numpy as np
import pyarrow as pa
import pytest

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.records import MALFORMED_KINDS, malformed_record
from streambind.sim.streams import aligned_origin_ns, device_stream, interleave, timed_stream
from streambind.stream.chunks import MODALITIES
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.ids import event_id
from streambind.stream.runner import StreamRunner
from streambind.stream.schemas import event_json_schema

pytestmark = pytest.mark.broker
S = 1_000_000_000


def base_ns() -> int:
    """An event-time origin 10 minutes ago, aligned to 10 s."""
    return aligned_origin_ns()


def make_config(bootstrap: str, make_topic, modalities=MODALITIES, **overrides) -> StreamConfig:  # noqa: ANN001
    topics = {m: make_topic(f"sensors.{m}") for m in modalities}
    params = dict(
        bootstrap=bootstrap,
        group_id=f"g-{topics[modalities[0]]}",
        modalities=tuple(modalities),
        topics=topics,
        events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"),
        hop_ms={"audio": 2000, "vision": 2000, "depth": 2000, "thermal": 2000, "imu": 5000},
        idle_timeout_s=1.0,
        session_timeout_ms=2000,
        commit_interval_s=0.2,
        lag_interval_s=0.2,
        model="stand-in",
    )
    params.update(overrides)
    return StreamConfig(**params)


def run_until(runner: StreamRunner, done, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    runner.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done():
            if runner.error is not None:
                break
            time.sleep(0.2)
    finally:
        runner.stop()


def test_every_modality_gives_exactly_the_expected_windows(bootstrap, make_topic):
    cfg = make_config(bootstrap, make_topic)
    t0 = base_ns()
    seconds = {"audio": 6, "vision": 6, "depth": 6, "thermal": 6, "imu": 15}
    records = interleave(timed_stream("dev-a", t0, seconds), timed_stream("dev-b", t0, seconds))
    send_records(bootstrap, [(cfg.topic(m), r) for m, r in records])
    expected = set()
    for dev in ("dev-a", "dev-b"):
        for m, secs in seconds.items():
            size = 5 if m == "imu" else 2
            expected |= {(dev, m, t0 + k * size * S, t0 + (k + 1) * size * S)
                         for k in range(secs // size)}

    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    events: list = []

    def done() -> bool:
        events[:] = read_topic(bootstrap, cfg.events_topic, idle_s=0.5, timeout_s=5)
        return len({json.loads(e.value)["event_id"] for e in events}) >= len(expected)

    run_until(runner, done)
    assert runner.error is None
    got = {}
    schema = event_json_schema()
    for rec in events:
        ev = json.loads(rec.value)
        jsonschema.validate(ev, schema)
        assert rec.key.decode() == ev["event_id"]
        assert ev["event_id"] == event_id(ev["device_id"], ev["modality"], ev["window_start_ns"],
                                          ev["window_end_ns"], "", 0, "stand-in")
        got[ev["event_id"]] = (ev["device_id"], ev["modality"], ev["window_start_ns"],
                               ev["window_end_ns"])
    assert set(got.values()) == expected
    assert runner.stats.records_dlq == 0
    # Embeddings: Arrow IPC with the contract's schema, one row per window.
    emb = read_topic(bootstrap, cfg.embeddings_topic, idle_s=0.5, timeout_s=10)
    rows = set()
    for rec in emb:
        table = pa.ipc.open_stream(rec.value).read_all()
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 8)
        for row in table.to_pylist():
            rows.add((row["device_id"], row["modality"], row["window_start_ns"],
                      row["window_end_ns"]))
            assert abs(np.linalg.norm(row["embedding"]) - 1.0) < 1e-5
    assert rows == expected


def test_malformed_records_go_to_the_dlq_and_good_ones_keep_flowing(bootstrap, make_topic):
    cfg = make_config(bootstrap, make_topic, modalities=("audio", "imu", "depth", "thermal"))
    t0 = base_ns()
    good = device_stream("dev-g", t0, {"audio": 4, "imu": 10, "depth": 4, "thermal": 4})
    bad = [malformed_record(kind, "dev-g", t0 + 1 * S, 10_000 + i)
           for i, kind in enumerate(MALFORMED_KINDS)]
    # Interleave: a malformed record after every few good ones.
    items = []
    for i, (m, r) in enumerate(good):
        items.append((cfg.topic(m), r))
        if i % 7 == 3 and bad:
            bm, br = bad.pop(0)
            items.append((cfg.topic(bm), br))
    items += [(cfg.topic(bm), br) for bm, br in bad]
    send_records(bootstrap, items)

    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    n_windows = 2 + 2 + 2 + 2

    def done() -> bool:
        dlq = read_topic(bootstrap, cfg.dlq_topic, idle_s=0.3, timeout_s=3)
        ev = read_topic(bootstrap, cfg.events_topic, idle_s=0.3, timeout_s=3)
        return len(dlq) >= len(MALFORMED_KINDS) and len(ev) >= n_windows

    run_until(runner, done)
    assert runner.error is None
    dlq = read_topic(bootstrap, cfg.dlq_topic, idle_s=0.5, timeout_s=10)
    reasons = {}
    for rec in dlq:
        headers = dict(rec.headers)
        reasons[headers["error.reason"].decode()] = rec
        assert headers["error.detail"]
        src_topic = headers["source.topic"].decode()
        assert src_topic in cfg.modality_of()
        assert int(headers["source.partition"]) == 0
        assert int(headers["source.offset"]) >= 0
        assert "schema" in headers  # the original headers are kept
    assert set(reasons) == set(MALFORMED_KINDS)
    assert reasons["decode_error"].value == b"not arrow at all"
    assert reasons["bad_key"].key == b"someone-else"
    events = read_topic(bootstrap, cfg.events_topic, idle_s=0.5, timeout_s=10)
    windows = {(json.loads(e.value)["modality"], json.loads(e.value)["window_start_ns"])
               for e in events}
    assert len(windows) == n_windows
    assert runner.stats.records_dlq == len(MALFORMED_KINDS)


def test_idle_clock_runs_after_a_restart_when_a_partition_has_only_old_data(
        bootstrap, make_topic):
    """A partition fully consumed before the restart (committed at its end, nothing new) must
    not count as a backlog: the idle clock runs, so the other device's last window closes."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    cfg = make_config(bootstrap, make_topic, modalities=("audio", "imu"))
    t0 = base_ns()
    old = [(cfg.topic(m), r) for m, r in device_stream("dev-old", t0, {"imu": 10})]
    send_records(bootstrap, old)
    # The group consumed and committed all of it before this restart.
    tp = TopicPartition(cfg.topic("imu"), 0)
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=cfg.group_id,
                              enable_auto_commit=False, auto_offset_reset="earliest")
    committer.assign([tp])
    seen, deadline = 0, time.monotonic() + 20
    while seen < len(old) and time.monotonic() < deadline:
        seen += sum(len(m) for m in committer.poll(timeout_ms=200).values())
    assert seen == len(old)
    end = committer.position(tp)  # (the embedded broker's end_offsets() can lag behind)
    committer.commit({tp: OffsetAndMetadata(end, "", -1)})
    committer.close()
    # New data of another device: 4 s of audio; its last window [2 s, 4 s) can only close
    # by the idle timeout (the watermark stops 1 s short of it).
    send_records(bootstrap, [(cfg.topic(m), r)
                             for m, r in device_stream("dev-new", t0, {"audio": 4})])
    expected = {(t0, t0 + 2 * S), (t0 + 2 * S, t0 + 4 * S)}
    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    events: list = []

    def done() -> bool:
        events[:] = read_topic(bootstrap, cfg.events_topic, idle_s=0.3, timeout_s=3)
        return len(events) >= len(expected)

    run_until(runner, done, timeout_s=25)
    assert runner.error is None
    got = {(json.loads(e.value)["window_start_ns"], json.loads(e.value)["window_end_ns"])
           for e in events}
    assert got == expected
