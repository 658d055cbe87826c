"""Dead letters of the worker on the real broker: frames that do not decode when a window
needs them (``bad_frame``), and windows that fail assembly or featurization."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.records import Record, encode_frame, frame_record
from streambind.sim.streams import aligned_origin_ns
from streambind.stream.chunks import SensorChunk, SourceRecord
from streambind.stream.config import StreamConfig
from streambind.stream.dead_letter import DeadLetterWriter
from streambind.stream.embed import StandInEmbedder
from streambind.stream.records import encode_columns, schema_headers
from streambind.stream.runner import StreamRunner
from streambind.stream.sinks import EmbeddingSink
from streambind.stream.windows import Windower
from streambind.stream.worker import EmbedWorker

pytestmark = pytest.mark.broker
S = 1_000_000_000
MS = 1_000_000


def _headers(rec) -> dict[str, bytes]:  # noqa: ANN001
    return dict(rec.headers)


def corrupt_jpeg_record(device: str, ts_ns: int, seq: int, frame: np.ndarray) -> Record:
    """A vision record whose JPEG header is intact (it passes intake) but whose body is cut
    short, so the frame fails only when decoded."""
    data = encode_frame(frame, "jpeg")
    cut = data[: len(data) // 3]
    height, width = frame.shape[:2]
    value = encode_columns("vision", {
        "device_id": [device], "ts_ns": [ts_ns], "seq": [seq], "width": [width],
        "height": [height], "encoding": ["jpeg"], "data": [cut]})
    return Record(device.encode(), value, schema_headers("vision"))


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_bad_frames_go_to_the_dlq_once_and_windows_use_a_good_neighbour(
        bootstrap, make_topic, delivery):
    topic = make_topic("sensors.vision")
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"g-{topic}", modalities=("vision",),
        topics={"vision": topic}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), state_topic=make_topic("streambind.state"),
        hop_ms={"vision": 1000}, idle_timeout_s=1.0, session_timeout_ms=2000,
        commit_interval_s=0.2, lag_interval_s=0.2, model="stand-in", delivery=delivery)
    t0 = aligned_origin_ns()
    rng = np.random.default_rng(7)
    # 6 s at 4 fps; the frames at 1.0, 1.25, 1.5 and 1.75 s are corrupt. With 2 s windows
    # every 1 s, [0, 2) falls back past 1.75, 1.5, 1.25 for its last frame and [1, 3) past
    # 1.0, 1.25, 1.5 for its first: 6 failures, 4 records.
    bad_ts = {t0 + k * 250 * MS for k in (4, 5, 6, 7)}
    records = []
    for i in range(24):
        ts = t0 + i * 250 * MS
        frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        records.append(corrupt_jpeg_record("cam-1", ts, i, frame) if ts in bad_ts
                       else frame_record("vision", "cam-1", ts, i, frame, "jpeg"))
    send_records(bootstrap, [(topic, r) for r in records])
    bad_offsets = {i for i in range(24) if t0 + i * 250 * MS in bad_ts}
    expected = {(t0 + k * S, t0 + (k + 2) * S) for k in range(5)}  # [0,2) ... [4,6)
    committed = delivery == "exactly_once"

    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        events: list = []
        while time.monotonic() < deadline and runner.error is None:
            events = read_topic(bootstrap, cfg.events_topic, idle_s=0.3, timeout_s=3,
                                read_committed=committed)
            if len({json.loads(e.value)["event_id"] for e in events}) >= len(expected):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a commit interval or two: the last dead letters are committed
    finally:
        runner.stop()
    assert runner.error is None
    got = {(json.loads(e.value)["window_start_ns"], json.loads(e.value)["window_end_ns"])
           for e in events}
    assert expected <= got  # every full window emitted, each on good frames (and the
    assert got - expected <= {(t0 - S, t0 + S), (t0 + 5 * S, t0 + 7 * S)}  # half-covered ends)
    dlq = read_topic(bootstrap, cfg.dlq_topic, idle_s=0.5, timeout_s=10,
                     read_committed=committed)
    offsets = [int(_headers(r)["source.offset"]) for r in dlq]
    assert sorted(offsets) == sorted(bad_offsets)  # each failed record once
    for rec in dlq:
        h = _headers(rec)
        assert h["error.reason"] == b"bad_frame"
        assert h["error.detail"].startswith(b"decode_error: ")
        assert h["source.topic"] == topic.encode() and h["source.partition"] == b"0"
        assert h["schema"] == b"streambind.vision.v1"  # the original headers are kept
        original = records[int(h["source.offset"])]
        assert rec.key == original.key and rec.value == original.value
    # Every window was released once its outputs and dead letters were acknowledged, so
    # the group committed every record.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=cfg.group_id,
                             enable_auto_commit=False)
    try:
        meta = consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close()
    assert meta is not None and meta >= 20  # the open tail [5, 7) may stay uncommitted


class RecordingProducer:
    """The real producer, noting the future of every dead letter by its source record."""

    def __init__(self, producer: KafkaProducer, dlq_topic: str) -> None:
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.letters: dict[tuple[str, int], list] = {}

    def send(self, topic, **kwargs):  # noqa: ANN001, ANN003, ANN201
        future = self.producer.send(topic, **kwargs)
        if topic == self.dlq_topic:
            h = dict(kwargs["headers"])
            where = (h["source.topic"].decode(), int(h["source.offset"]))
            self.letters.setdefault(where, []).append(future)
        return future

    def flush(self) -> None:
        self.producer.flush()
        self.producer.close(timeout=10)


def _source(topic: str, offset: int, device: str, value: bytes) -> SourceRecord:
    return SourceRecord(topic, 0, offset, device.encode(), value, [("schema", b"x")])


def test_failed_windows_send_their_records_to_the_dlq_before_release(bootstrap, make_topic):
    """Assembly failure (audio chunk not mono) and featurize failure (a depth frame of the
    wrong shape): every record of the failed windows reaches the DLQ once (windows overlap,
    hop 1 s), each window is released exactly once and only after its dead letters are
    acknowledged; a good window of the same batch is published."""
    dlq_topic = make_topic("streambind.dlq")
    cfg = StreamConfig(bootstrap=bootstrap, dlq_topic=dlq_topic,
                       events_topic=make_topic("streambind.events"),
                       embeddings_topic=make_topic("streambind.embeddings"),
                       hop_ms={"audio": 1000, "depth": 2000}, model="stand-in")
    producer = RecordingProducer(KafkaProducer(**cfg.producer_kwargs()), dlq_topic)
    writer = DeadLetterWriter(dlq_topic, producer, max_request_bytes=16 * 1024 * 1024)
    t0 = aligned_origin_ns()
    clock = [0.0]
    audio = Windower(cfg.window_spec("audio"), lambda: clock[0])
    for i in range(4):  # 1 s stereo-shaped chunks: assembly refuses them
        data = np.zeros((16000, 2), np.float32)
        audio.add(SensorChunk("audio", "mic-1", t0 + i * S, t0 + (i + 1) * S, i, data, 16000.0,
                              None, 0, i, source=_source("sensors.audio", i, "mic-1", b"a%d" % i)))
    depth = Windower(cfg.window_spec("depth"), lambda: clock[0])
    for i in range(8):  # 4 fps for 2 s; the frames decoded already, of shape (4, 4, 2)
        depth.add(SensorChunk("depth", "cam-9", t0 + i * 250 * MS, t0 + (i + 1) * 250 * MS, i,
                              np.ones((4, 4, 2), np.uint16), None, None, 0, 100 + i,
                              source=_source("sensors.depth", 100 + i, "cam-9", b"d%d" % i)))
    good = Windower(cfg.window_spec("depth"), lambda: clock[0])
    for i in range(8):
        good.add(SensorChunk("depth", "cam-ok", t0 + i * 250 * MS, t0 + (i + 1) * 250 * MS, i,
                             np.full((8, 8), 1000, np.uint16), None, None, 0, 200 + i,
                             source=_source("sensors.depth", 200 + i, "cam-ok", b"g%d" % i)))
    windows = audio.flush() + depth.flush() + good.flush()
    released: list = []
    lock = threading.Lock()
    chunks_of = {w.key: w.chunks for w in windows}

    def on_output(tag, key, counted):  # noqa: ANN001
        # When a window is released, every dead letter of its records is acknowledged, or
        # still pinned by an unreleased window that holds the same record (written once).
        with lock:
            done = {r[1] for r in released} | {key}
            unpinned = [
                c.source.offset for c in chunks_of[key]
                for f in producer.letters.get((c.source.topic, c.source.offset), [])
                if not (f.is_done and f.succeeded())
                and not any(k not in done and any(c.source is x.source for x in chunks)
                            for k, chunks in chunks_of.items())]
            released.append((tag, key, counted, unpinned))

    part = object()  # the partition state the worker hands back (opaque here)
    worker = EmbedWorker(StandInEmbedder(dim=8), EmbeddingSink(cfg), producer, "stand-in", 16,
                         on_output, dead_letters=writer)
    worker.start()
    try:
        for window in windows:
            worker.put(part, window)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(released) < len(windows):
            time.sleep(0.05)
    finally:
        worker.stop()
        producer.flush()
    assert worker.error is None
    assert sorted(r[1] for r in released) == sorted(w.key for w in windows)  # each once
    assert all(r[0] is part and r[2] and not r[3] for r in released)
    dlq = read_topic(bootstrap, dlq_topic, idle_s=0.5, timeout_s=10)
    by_offset: dict[tuple[bytes, int], dict] = {}
    for rec in dlq:
        h = _headers(rec)
        where = (h["source.topic"], int(h["source.offset"]))
        assert where not in by_offset, f"{where} dead-lettered twice"
        by_offset[where] = h
        assert rec.value in {b"a%d" % i for i in range(4)} | {b"d%d" % i for i in range(8)}
        assert h["schema"] == b"x"
    audio_offsets = {o for (t, o) in by_offset if t == b"sensors.audio"}
    depth_offsets = {o for (t, o) in by_offset if t == b"sensors.depth"}
    assert audio_offsets == {0, 1, 2, 3}
    # Only the depth frames the failed window retained (its candidates) are its records.
    assert depth_offsets and depth_offsets <= set(range(100, 108))
    for (t, _), h in by_offset.items():
        if t == b"sensors.audio":
            assert h["error.reason"] == b"assembly_failed"
            assert b"mono" in h["error.detail"] and h["error.detail"].startswith(b"window [")
        else:
            assert h["error.reason"] == b"featurize_failed"
            assert b"bad_shape: " in h["error.detail"]
    events = read_topic(bootstrap, cfg.events_topic, idle_s=0.5, timeout_s=10)
    assert {json.loads(e.value)["device_id"] for e in events} == {"cam-ok"}


def test_dead_letter_value_is_bounded():
    class Recorder:
        def __init__(self) -> None:
            self.sent: list = []

        def send(self, topic, key=None, value=None, headers=None):  # noqa: ANN001
            from kafka.future import Future
            self.sent.append((topic, key, value, headers))
            return Future().success(None)

    from streambind.errors import RecordError

    rec = Recorder()
    writer = DeadLetterWriter("dlq", rec, max_request_bytes=256 * 1024)
    writer.send(b"k", b"x" * 300_000, [("schema", b"s")], RecordError("too_large", "big"),
                "sensors.imu", 0, 5)
    writer.send(b"k", b"y" * 1000, None, RecordError("bad_shape", "small"), "sensors.imu", 0, 6)
    (_, key, value, headers), (_, _, small, _) = rec.sent
    assert key == b"k" and value is None and dict(headers)["error.value_bytes"] == b"300000"
    assert small == b"y" * 1000


def test_failed_window_of_a_revoked_partition_is_left_to_the_new_owner(bootstrap, make_topic):
    """A window whose partition was revoked meanwhile is released without a dead letter:
    the new owner replays its records and writes them."""
    dlq_topic = make_topic("streambind.dlq")
    cfg = StreamConfig(bootstrap=bootstrap, dlq_topic=dlq_topic, hop_ms={"audio": 2000},
                       events_topic=make_topic("streambind.events"),
                       embeddings_topic=make_topic("streambind.embeddings"), model="stand-in")
    producer = KafkaProducer(**cfg.producer_kwargs())
    writer = DeadLetterWriter(dlq_topic, producer)
    windower = Windower(cfg.window_spec("audio"), lambda: 0.0)
    windower.add(SensorChunk("audio", "mic-r", 0, S, 0, np.zeros((16000, 2), np.float32),
                             16000.0, None, 0, 0,
                             source=_source("sensors.audio", 0, "mic-r", b"r")))
    (window,) = windower.flush()
    released = threading.Event()
    worker = EmbedWorker(StandInEmbedder(dim=8), EmbeddingSink(cfg), producer, "stand-in", 4,
                         lambda *_: released.set(), is_live=lambda _tag: False,
                         dead_letters=writer)
    worker.start()
    try:
        worker.put("revoked", window)
        assert released.wait(30)
    finally:
        worker.stop()
        producer.close(timeout=10)
    assert writer.sent == 0
    assert read_topic(bootstrap, dlq_topic, idle_s=0.5, timeout_s=3) == []
