"""Build wire-contract records (key, value, headers) for every modality, good or malformed.

Used by the simulator, the tests and the benchmarks. A record is a :class:`Record` tuple
that can be passed to ``KafkaProducer.send(topic, key=..., value=..., headers=...)``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from streambind.stream.records import IMU_COLUMNS, REASONS, encode_columns, schema_headers
from streambind.units import NS_PER_S

MALFORMED_KINDS = REASONS  # one malformed record per dead-letter reason


class Record(NamedTuple):
    """A Kafka record ready to send."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def audio_record(
    device_id: str, ts_ns: int, seq: int, samples: np.ndarray, sample_rate: int,
    encoding: str = "pcm_s16le",
) -> Record:
    """One audio chunk; ``samples`` float in [-1, 1], (N,) mono or (N, C) interleaved."""
    arr = np.asarray(samples, dtype=np.float32)
    channels = 1 if arr.ndim == 1 else arr.shape[1]
    if encoding == "pcm_s16le":
        data = (np.clip(arr, -1, 1) * 32767).astype("<i2").tobytes()
    else:
        data = arr.astype("<f4").tobytes()
    value = encode_columns("audio", {
        "device_id": [device_id], "ts_ns": [ts_ns], "seq": [seq], "sample_rate": [sample_rate],
        "channels": [channels], "encoding": [encoding], "data": [data]})
    return Record(device_id.encode(), value, schema_headers("audio"))


def imu_record(device_id: str, ts_ns: Sequence[int], seq0: int, values: np.ndarray) -> Record:
    """A batch of IMU samples: ``values`` (N, 6) acc x,y,z (m/s²), gyro x,y,z (rad/s)."""
    vals = np.asarray(values, dtype=np.float32)
    n = len(ts_ns)
    cols: dict[str, object] = {"device_id": [device_id] * n, "ts_ns": list(ts_ns),
                               "seq": list(range(seq0, seq0 + n))}
    for i, name in enumerate(IMU_COLUMNS):
        cols[name] = vals[:, i]
    return Record(device_id.encode(), encode_columns("imu", cols), schema_headers("imu"))


def encode_frame(frame: np.ndarray, encoding: str) -> bytes:
    """Encode a frame array: jpeg/png/rgb8 from uint8 (H, W, 3); raw encodings little-endian."""
    if encoding in ("jpeg", "png"):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(
            buf, format="JPEG" if encoding == "jpeg" else "PNG", quality=80)
        return buf.getvalue()
    dtype = {"rgb8": "|u1", "u16_mm": "<u2", "f32_m": "<f4", "u8": "|u1", "u16": "<u2",
             "f32_c": "<f4"}[encoding]
    return np.ascontiguousarray(frame).astype(dtype).tobytes()


def frame_record(
    modality: str, device_id: str, ts_ns: int, seq: int, frame: np.ndarray, encoding: str
) -> Record:
    """One frame of vision, depth or thermal."""
    height, width = frame.shape[:2]
    value = encode_columns(modality, {
        "device_id": [device_id], "ts_ns": [ts_ns], "seq": [seq], "width": [width],
        "height": [height], "encoding": [encoding], "data": [encode_frame(frame, encoding)]})
    return Record(device_id.encode(), value, schema_headers(modality))


def malformed_record(kind: str, device_id: str, ts_ns: int, seq: int) -> tuple[str, Record]:
    """A record that must be dead-lettered with reason ``kind``; returns (modality, record)."""
    rng = np.random.default_rng(seq)
    tone = (0.1 * rng.standard_normal(1600)).astype(np.float32)
    if kind == "bad_schema":
        good = audio_record(device_id, ts_ns, seq, tone, 16000)
        return "audio", good._replace(headers=[("schema", b"streambind.vision.v1")])
    if kind == "decode_error":
        return "audio", Record(device_id.encode(), b"not arrow at all", schema_headers("audio"))
    if kind == "too_large":
        n = 5000  # IMU records hold at most 4096 rows
        ts = [ts_ns + i * 2_500_000 for i in range(n)]
        return "imu", imu_record(device_id, ts, seq, np.zeros((n, 6), np.float32))
    if kind == "bad_shape":
        good = frame_record("depth", device_id, ts_ns, seq, np.ones((8, 8), np.uint16), "u16_mm")
        value = encode_columns("depth", {
            "device_id": [device_id], "ts_ns": [ts_ns], "seq": [seq], "width": [0],
            "height": [8], "encoding": ["u16_mm"], "data": [b"\0" * 128]})
        return "depth", good._replace(value=value)
    if kind == "bad_encoding":
        value = encode_columns("thermal", {
            "device_id": [device_id], "ts_ns": [ts_ns], "seq": [seq], "width": [4],
            "height": [4], "encoding": ["u32"], "data": [b"\0" * 64]})
        return "thermal", Record(device_id.encode(), value, schema_headers("thermal"))
    if kind == "bad_rate":
        return "audio", audio_record(device_id, ts_ns, seq, tone, 12345)
    if kind == "non_finite":
        vals = np.zeros((4, 6), np.float32)
        vals[2, 1] = np.nan
        ts = [ts_ns + i * 10_000_000 for i in range(4)]
        return "imu", imu_record(device_id, ts, seq, vals)
    if kind == "future_timestamp":
        return "audio", audio_record(device_id, ts_ns + 3600 * NS_PER_S, seq, tone, 16000)
    if kind == "bad_key":
        good = audio_record(device_id, ts_ns, seq, tone, 16000)
        return "audio", good._replace(key=b"someone-else")
    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
