"""Integration tests of the streaming core against the real broker (no mocks)."""

from __future__ import annotations

import json
import time

import jsonschema
import numpy as np
import pyarrow as pa
import pytest

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.records import (
    MALFORMED_KINDS,
    audio_record,
    frame_record,
    imu_record,
    malformed_record,
)
from streambind.stream.chunks import MODALITIES
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.ids import event_id
from streambind.stream.runner import StreamRunner
from streambind.stream.schemas import event_json_schema

pytestmark = pytest.mark.broker
S = 1_000_000_000
MS = 1_000_000


def base_ns() -> int:
    """An event-time origin 10 minutes ago, aligned to 10 s."""
    return (time.time_ns() - 600 * S) // (10 * S) * (10 * S)


def device_stream(device: str, t0: int, seconds: dict[str, int]) -> list[tuple[str, object]]:
    """(modality, record) pairs covering [t0, t0 + seconds[modality]), in event-time order."""
    return [(m, r) for _, m, r in sorted(timed_stream(device, t0, seconds), key=lambda x: x[0])]


def interleave(*streams: list[tuple[int, str, object]]) -> list[tuple[str, object]]:
    """Merge timed streams of several devices by event time (as a real fleet produces)."""
    merged = sorted((x for s in streams for x in s), key=lambda x: x[0])
    return [(m, r) for _, m, r in merged]


def timed_stream(device: str, t0: int, seconds: dict[str, int]) -> list[tuple[int, str, object]]:
    """(ts_ns, modality, record) triples covering [t0, t0 + seconds[modality])."""
    rng = np.random.default_rng(abs(hash(device)) % 2**32)
    out: list[tuple[int, str, object]] = []
    if "audio" in seconds:
        rate, chunk = 16000, 1600  # 100 ms chunks
        for i in range(seconds["audio"] * 10):
            samples = 0.2 * np.sin(np.arange(chunk) * 0.05 + i).astype(np.float32)
            ts0 = t0 + i * 100 * MS
            out.append((ts0, "audio", audio_record(device, ts0, i, samples, rate)))
    if "imu" in seconds:
        rate, batch = 100, 50  # 0.5 s batches
        for b in range(seconds["imu"] * rate // batch):
            ts = [t0 + (b * batch + j) * 10 * MS for j in range(batch)]
            vals = rng.standard_normal((batch, 6)).astype(np.float32)
            out.append((ts[0], "imu", imu_record(device, ts, b * batch, vals)))
    frames = {
        "vision": (lambda: rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "jpeg"),
        "depth": (lambda: rng.integers(500, 4000, (32, 40), dtype=np.uint16), "u16_mm"),
        "thermal": (lambda: rng.integers(0, 2**14, (24, 32), dtype=np.uint16), "u16"),
    }
    for modality, (make, encoding) in frames.items():
        if modality in seconds:
            for i in range(seconds[modality] * 4):  # 4 fps
                ts0 = t0 + i * 250 * MS
                rec = frame_record(modality, device, ts0, i, make(), encoding)
                out.append((ts0, modality, rec))
    return out


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
