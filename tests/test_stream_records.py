"""Record validation: every rejection reason, and the chunks of good records."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streambind.errors import RecordError
from streambind.features import decode_pcm
from streambind.sim.records import (
    MALFORMED_KINDS,
    audio_record,
    frame_record,
    imu_record,
    malformed_record,
)
from streambind.stream.records import REASONS, decode_record, dlq_headers

S = 1_000_000_000
NOW = time.time_ns()


def decode(modality, rec, **kw):  # noqa: ANN001, ANN201
    return decode_record(modality, rec.key, rec.value, rec.headers, partition=3, offset=7,
                         now_ns=NOW, **kw)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_is_rejected_with_its_reason(kind):
    modality, rec = malformed_record(kind, "dev", NOW - 10 * S, 1)
    with pytest.raises(RecordError) as info:
        decode(modality, rec)
    assert info.value.reason == kind
    assert kind in REASONS


def test_audio_chunk_span_and_samples():
    rec = audio_record("dev", NOW - S, 4, np.full((800, 2), 0.5, np.float32), 16000)
    (chunk,) = decode("audio", rec)
    assert chunk.end_ns - chunk.ts_ns == 50_000_000  # 800 samples at 16 kHz
    assert chunk.data.shape == (800,) and chunk.data.dtype == np.float32
    assert abs(float(chunk.data[0]) - 0.5) < 1e-3
    assert (chunk.partition, chunk.offset, chunk.seq, chunk.sample_rate) == (3, 7, 4, 16000.0)


def test_imu_chunk_rate_and_times():
    ts = [NOW - S + i * 5_000_000 for i in range(40)]
    (chunk,) = decode("imu", imu_record("dev", ts, 10, np.ones((40, 6), np.float32)))
    assert chunk.sample_rate == pytest.approx(200.0)
    assert chunk.data.shape == (40, 6)
    assert list(chunk.sample_ts_ns) == ts
    assert chunk.end_ns == ts[-1] + 5_000_000


@pytest.mark.parametrize(("modality", "frame", "encoding", "shape"), [
    ("vision", np.zeros((30, 40, 3), np.uint8), "png", (30, 40, 3)),
    ("depth", np.full((10, 12), 1500, np.uint16), "u16_mm", (10, 12)),
    ("thermal", np.full((8, 8), 21.5, np.float32), "f32_c", (8, 8)),
])
def test_frames_decode(modality, frame, encoding, shape):
    rec = frame_record(modality, "dev", NOW - S, 1, frame, encoding)
    (chunk,) = decode(modality, rec)
    # Frames stay encoded until a window needs them; the chunk references its record.
    assert chunk.encoded and chunk.encoding == encoding
    assert chunk.frame().shape == shape
    assert np.array_equal(chunk.frame(), frame)
    assert chunk.sample_rate is None
    assert chunk.source.value == rec.value and chunk.source.key == rec.key
    assert (chunk.source.partition, chunk.source.offset) == (3, 7)
    assert len(rec.value) <= chunk.nbytes <= len(rec.value) + 8


def vision_value(payload: bytes, w: int = 64, h: int = 48) -> bytes:
    from streambind.stream.records import encode_columns

    return encode_columns("vision", {"device_id": ["dev"], "ts_ns": [NOW - S], "seq": [1],
                                     "width": [w], "height": [h], "encoding": ["jpeg"],
                                     "data": [payload]})


def test_a_corrupt_jpeg_body_passes_intake_and_fails_when_decoded():
    from streambind.errors import FeatureError

    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (chunk,) = decode("vision", frame_record("vision", "dev", NOW - S, 1, frame, "jpeg"))
    payload = bytes(chunk.data)
    rec = frame_record("vision", "dev", NOW - S, 1, frame, "jpeg")
    (bad,) = decode("vision", rec._replace(value=vision_value(payload[: len(payload) // 2])))
    with pytest.raises(FeatureError) as info:  # header intact, scan data cut short
        bad.frame()
    assert info.value.reason == "decode_error"
    # A header that names another size is refused at intake already.
    with pytest.raises(RecordError) as err:
        decode("vision", rec._replace(value=vision_value(payload, w=32)))
    assert err.value.reason == "bad_shape"


def test_nan_thermal_is_non_finite_but_nan_depth_is_a_hole():
    bad = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(RecordError, match="non_finite"):
        decode("thermal", frame_record("thermal", "dev", NOW - S, 1, bad, "f32_c"))
    (chunk,) = decode("depth", frame_record("depth", "dev", NOW - S, 1, bad, "f32_m"))
    assert np.isnan(chunk.frame()).all()


def test_too_large_payload_and_missing_header():
    rec = audio_record("dev", NOW - S, 1, np.zeros(16000, np.float32), 16000)
    with pytest.raises(RecordError) as info:
        decode("audio", rec._replace(value=rec.value + b"\0" * (1 << 20)))
    assert info.value.reason == "too_large"
    with pytest.raises(RecordError) as info:
        decode("audio", rec._replace(headers=[]))
    assert info.value.reason == "bad_schema"


def test_dlq_headers_keep_originals_and_add_the_contract_headers():
    err = RecordError("non_finite", "x" * 2000)
    headers = dlq_headers([("schema", b"s")], err, "sensors.imu", 2, 99)
    d = dict(headers)
    assert d["schema"] == b"s"
    assert d["error.reason"] == b"non_finite"
    assert len(d["error.detail"]) <= 500
    assert (d["source.topic"], d["source.partition"], d["source.offset"]) == (
        b"sensors.imu", b"2", b"99")


def test_mono_pcm16_stays_as_sent_and_counts_its_bytes_once():
    samples = np.sin(np.linspace(0, 40, 1600)).astype(np.float32) * 0.8
    rec = audio_record("dev", NOW - S, 4, samples, 16000)
    (chunk,) = decode("audio", rec)
    assert chunk.data.dtype == np.int16 and chunk.data.shape == (1600,)
    sent = np.frombuffer(rec.value, np.uint8)
    assert np.shares_memory(chunk.data, sent)  # a view of the record, not a copy
    assert chunk.nbytes <= len(rec.value)  # payload and the rest of the record, once
    want = decode_pcm("pcm_s16le", 1, chunk.data.tobytes())
    assert np.array_equal(chunk.data.astype(np.float32) / 32768.0, want)


def test_mono_pcm16_of_an_odd_byte_length_is_a_decode_error():
    from streambind.sim.records import Record, encode_columns, schema_headers

    value = encode_columns("audio", {
        "device_id": ["dev"], "ts_ns": [NOW - S], "seq": [1], "sample_rate": [16000],
        "channels": [1], "encoding": ["pcm_s16le"], "data": [b"\x01\x02\x03"]})
    with pytest.raises(RecordError) as info:
        decode("audio", Record(b"dev", value, schema_headers("audio")))
    assert info.value.reason == "decode_error"
