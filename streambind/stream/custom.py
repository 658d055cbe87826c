"""New sensor kinds on the wire (DESIGN "Wire contract: new sensors"): records, windows,
model inputs.

- ``series`` (``streambind.series.v1``): one row per chunk, ``sample_rate`` (Hz),
  ``channels``, ``data`` float32 little-endian interleaved by sample.
- ``frame`` (``streambind.frame.v1``): one row per single-channel frame, ``width``,
  ``height``, ``encoding`` (``u8``, ``u16``, ``f32``, ``png``), ``data``.

Windowing reuses the core's :class:`~streambind.stream.windows.Windower` (event time per
device, epoch-aligned windows, coverage, idle timeout). The windower knows the six
modalities only, so a new sensor's chunks travel through it under a *carrier* modality
with the same window semantics (a series like audio: chunks join every window their span
overlaps; a frame like depth: the frame nearest the window's middle); the window keeps the
sensor's name everywhere else. Decoding is bounded like the six (rows, payload and decoded
bytes), and every rejection is a :class:`~streambind.errors.RecordError` with a DLQ reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from scipy.signal import resample_poly

from streambind.errors import FeatureError, RecordError
from streambind.model.kinds import BoundTowerConfig, FrameConfig, SeriesConfig
from streambind.stream.chunks import SensorChunk, SourceRecord
from streambind.stream.ipc import read_ipc
from streambind.stream.window_types import NS_PER_S, ClosedWindow, WindowSpec

logger = logging.getLogger(__name__)

SCHEMA_HEADERS = {"series": "streambind.series.v1", "frame": "streambind.frame.v1"}
CARRIER = {"series": "audio", "frame": "depth"}  # windowing semantics borrowed from these
FRAME_ENCODINGS = ("u8", "u16", "f32", "png")
MAX_PAYLOAD_BYTES = 16 << 20
MAX_ROWS = 10_000
MAX_CHANNELS = 1024
MAX_SIDE_PX = 4096

_COMMON = [("device_id", pa.string()), ("ts_ns", pa.int64()), ("seq", pa.uint64())]
SCHEMAS = {
    "series": pa.schema(_COMMON + [("sample_rate", pa.float32()), ("channels", pa.int16()),
                                   ("data", pa.binary())]),
    "frame": pa.schema(_COMMON + [("width", pa.int32()), ("height", pa.int32()),
                                  ("encoding", pa.string()), ("data", pa.binary())]),
}


def headers(kind: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of a ``sensors.<name>`` record of ``kind``."""
    return [("schema", SCHEMA_HEADERS[kind].encode())]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def encode_series(device_id: str, ts_ns: Sequence[int], seq: Sequence[int],
                  sample_rate_hz: float, chunks: Sequence[np.ndarray]) -> bytes:
    """One ``streambind.series.v1`` record: each chunk is (samples, channels) float32."""
    arrays = [np.ascontiguousarray(c, dtype="<f4") for c in chunks]
    table = pa.table({
        "device_id": [device_id] * len(arrays), "ts_ns": list(ts_ns), "seq": list(seq),
        "sample_rate": [float(sample_rate_hz)] * len(arrays),
        "channels": [int(a.shape[1]) for a in arrays], "data": [a.tobytes() for a in arrays],
    }, schema=SCHEMAS["series"])
    return _ipc(table)


def encode_frame(device_id: str, ts_ns: int, seq: int, frame: np.ndarray,
                 encoding: str = "u16") -> bytes:
    """One ``streambind.frame.v1`` record of a single (H, W) frame (``u8``/``u16``/``f32``)."""
    dtype = {"u8": "u1", "u16": "<u2", "f32": "<f4"}[encoding]
    arr = np.ascontiguousarray(frame, dtype=dtype)
    table = pa.table({"device_id": [device_id], "ts_ns": [ts_ns], "seq": [seq],
                      "width": [arr.shape[1]], "height": [arr.shape[0]],
                      "encoding": [encoding], "data": [arr.tobytes()]}, schema=SCHEMAS["frame"])
    return _ipc(table)


def decode(kind: str, key: bytes | None, value: bytes | None,
           record_headers: Sequence[tuple[str, bytes]] | None, *, partition: int, offset: int,
           now_ns: int, topic: str = "", max_future_ns: int = 60 * NS_PER_S,
           frame_interval_ns: int = 250_000_000) -> list[SensorChunk]:
    """Decode and validate one record of a new sensor kind into carrier chunks."""
    want = SCHEMA_HEADERS.get(kind)
    got = next((v for k, v in record_headers or () if k == "schema"), None)
    if want is None or got is None or got.decode("utf-8", "replace") != want:
        raise RecordError("bad_schema", f"header schema={got!r}, want {want!r}")
    if not value:
        raise RecordError("bad_shape", "empty value")
    if len(value) > MAX_PAYLOAD_BYTES:
        raise RecordError("too_large", f"{len(value)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        device = key.decode("utf-8") if key else ""
    except UnicodeDecodeError as exc:
        raise RecordError("bad_key", "key is not UTF-8") from exc
    if not device:
        raise RecordError("bad_key", "missing key (device id)")
    table = read_ipc(pa.py_buffer(value), MAX_ROWS, 4 * MAX_PAYLOAD_BYTES)
    for field in SCHEMAS[kind]:
        idx = table.schema.get_field_index(field.name)
        if idx < 0 or table.schema.field(idx).type != field.type or table.column(idx).null_count:
            raise RecordError("bad_schema", f"field {field.name!r} missing, mistyped or null")
    if table.num_rows == 0:
        raise RecordError("bad_shape", "no rows")
    rows = table.to_pydict()
    if set(rows["device_id"]) != {device}:
        raise RecordError("bad_key", f"rows name other devices than the key {device!r}")
    if max(rows["ts_ns"]) > now_ns + max_future_ns:
        raise RecordError("future_timestamp", "ahead of the consumer clock")
    src = SourceRecord(topic, partition, offset, key, value, record_headers)
    out = []
    for i in range(table.num_rows):
        ts, seq, data = int(rows["ts_ns"][i]), int(rows["seq"][i]), rows["data"][i]
        if kind == "series":
            rate, channels = float(rows["sample_rate"][i]), int(rows["channels"][i])
            if not (np.isfinite(rate) and rate > 0) or not 0 < channels <= MAX_CHANNELS:
                raise RecordError("bad_shape", f"sample_rate {rate} / channels {channels}")
            if len(data) % (4 * channels):
                raise RecordError("bad_shape", f"{len(data)} bytes are not whole samples")
            samples = np.frombuffer(data, dtype="<f4").reshape(-1, channels)
            if not np.isfinite(samples).all():
                raise RecordError("non_finite", "series holds NaN or infinity")
            end = ts + round(len(samples) * NS_PER_S / rate)
            out.append(SensorChunk(CARRIER[kind], device, ts, end, seq, samples, rate, None,
                                   partition, offset, source=src))
        else:
            w, h, enc = int(rows["width"][i]), int(rows["height"][i]), rows["encoding"][i]
            if enc not in FRAME_ENCODINGS:
                raise RecordError("bad_encoding", f"frame encoding {enc!r}")
            if not (0 < w <= MAX_SIDE_PX and 0 < h <= MAX_SIDE_PX):
                raise RecordError("bad_shape", f"frame {w}x{h}")
            size = {"u8": 1, "u16": 2, "f32": 4}.get(enc)
            if size is not None and len(data) != w * h * size:
                raise RecordError("bad_shape", f"{len(data)} bytes for a {w}x{h} {enc} frame")
            out.append(SensorChunk(CARRIER[kind], device, ts, ts + frame_interval_ns, seq,
                                   bytes(data), None, None, partition, offset, encoding=enc,
                                   width=w, height=h, source=src))
    return out


def window_spec(cfg: BoundTowerConfig, hop_s: float | None = None, **kwargs) -> WindowSpec:
    """The core windower's spec for a bound tower's windows (carrier modality)."""
    size_ns = round(cfg.window_s * NS_PER_S)
    hop_ns = round(hop_s * NS_PER_S) if hop_s else size_ns // 2
    return WindowSpec(CARRIER[cfg.kind], size_ns, hop_ns, **kwargs)


def decode_custom_frame(chunk: SensorChunk) -> np.ndarray:
    """A frame chunk's (H, W) float32 values."""
    data, w, h, enc = chunk.data, chunk.width, chunk.height, chunk.encoding
    if enc == "png":
        from streambind.features import decode_frame

        arr = np.asarray(decode_frame("png", w, h, data), dtype=np.float32)
        return arr if arr.ndim == 2 else arr[..., 0]
    dtype = {"u8": "u1", "u16": "<u2", "f32": "<f4"}[enc]
    return np.frombuffer(data, dtype=dtype).reshape(h, w).astype(np.float32)


def series_input(window: ClosedWindow, cfg: SeriesConfig) -> torch.Tensor:
    """A closed window's chunks -> the tower input (channels, samples) at the tower's rate.

    Chunks are placed by event time at their own rate, gaps linearly interpolated per
    channel, then resampled to ``cfg.sample_rate_hz`` and cut or edge-padded to length.
    """
    chunks = window.chunks
    if not chunks:
        raise FeatureError(f"{window.key}: no chunks", "too_short")
    rate = float(chunks[0].sample_rate or cfg.sample_rate_hz)
    n = round((window.end_ns - window.start_ns) * rate / NS_PER_S)
    out = np.full((n, cfg.channels), np.nan, dtype=np.float32)
    for c in chunks:
        data = np.asarray(c.data, dtype=np.float32)
        if data.shape[1] != cfg.channels:
            raise FeatureError(f"{window.key}: {data.shape[1]} channels, the tower has "
                               f"{cfg.channels}", "bad_shape")
        if c.sample_rate and c.sample_rate != rate:
            raise FeatureError(f"{window.key}: mixed sample rates", "bad_shape")
        first = round((c.ts_ns - window.start_ns) * rate / NS_PER_S)
        lo, hi = max(first, 0), min(first + len(data), n)
        if hi > lo:
            out[lo:hi] = data[lo - first : hi - first]
    return series_tensor(out, rate, cfg)


def series_tensor(samples: np.ndarray, rate_hz: float, cfg: SeriesConfig) -> torch.Tensor:
    """(N, C) samples at ``rate_hz`` (NaN = missing) -> (C, cfg.samples) float32 tensor."""
    arr = np.asarray(samples, dtype=np.float64)
    good = np.isfinite(arr).all(axis=1)
    if good.sum() < 2:
        raise FeatureError("series: fewer than two samples", "too_short")
    if not good.all():  # linear interpolation over gaps, per channel
        idx = np.arange(len(arr))
        for ch in range(arr.shape[1]):
            arr[:, ch] = np.interp(idx, idx[good], arr[good, ch])
    if abs(rate_hz - cfg.sample_rate_hz) > 1e-6:
        from fractions import Fraction

        ratio = (Fraction(cfg.sample_rate_hz).limit_denominator(1000)
                 / Fraction(rate_hz).limit_denominator(1000)).limit_denominator(1000)
        arr = resample_poly(arr, ratio.numerator, ratio.denominator, axis=0, padtype="line")
    if len(arr) >= cfg.samples:
        arr = arr[: cfg.samples]
    else:
        arr = np.pad(arr, ((0, cfg.samples - len(arr)), (0, 0)), mode="edge")
    return torch.from_numpy(np.ascontiguousarray(arr.T, dtype=np.float32))  # (C, S)


def frame_input(window: ClosedWindow, cfg: FrameConfig) -> torch.Tensor:
    """A closed window's frame nearest its middle -> (1, H, W) in [0, 1] (min-max scaled
    per frame, like the thermal featurizer's auto mode, then resized to the tower's size)."""
    if not window.chunks:
        raise FeatureError(f"{window.key}: no frame", "too_short")
    middle = (window.start_ns + window.end_ns) // 2
    chunk = min(window.chunks, key=lambda c: abs(c.ts_ns - middle))
    return frame_tensor(decode_custom_frame(chunk), cfg)


def frame_tensor(frame: np.ndarray, cfg: FrameConfig) -> torch.Tensor:
    """(H0, W0) values -> (1, cfg.height_px, cfg.width_px) float32 in [0, 1]."""
    import torch.nn.functional as F

    arr = np.asarray(frame, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise FeatureError("frame holds NaN or infinity", "non_finite")
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    t = F.interpolate(t, size=(cfg.height_px, cfg.width_px), mode="bilinear",
                      align_corners=False)
    return t[0].clamp_(0, 1)


def tower_input(window: ClosedWindow, cfg: BoundTowerConfig) -> torch.Tensor:
    """The tower input of one closed window of a bound sensor."""
    if isinstance(cfg, SeriesConfig):
        return series_input(window, cfg)
    if isinstance(cfg, FrameConfig):
        return frame_input(window, cfg)
    raise FeatureError(f"no featurizer for tower kind {cfg.kind!r}", "bad_shape")
