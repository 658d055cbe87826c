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

In ``streambind run`` (a bound model): :class:`~streambind.stream.config.StreamConfig`
registers the model's bound towers here (:func:`register`), so that the core's entry points
dispatch a bound sensor's name to this module: ``records.decode_record`` to
:func:`decode_bound`, the partition's windower is a :class:`NamedWindower` (carrier
semantics, the sensor's name in every window key), ``assemble`` keeps the window whole
(:class:`BoundInput`) and ``embed.featurize`` calls :func:`featurize_bound`, which builds
the same tower inputs as ``streambind bind`` did (:func:`tower_input`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from scipy.signal import resample_poly

from streambind.errors import ConfigError, FeatureError, RecordError
from streambind.model.kinds import BoundTowerConfig, FrameConfig, SeriesConfig
from streambind.stream.chunks import SensorChunk, SourceRecord
from streambind.stream.ipc import read_ipc
from streambind.stream.records import check_envelope
from streambind.stream.window_types import ClosedWindow, WindowKey, WindowSpec
from streambind.stream.windows import Windower
from streambind.units import NS_PER_S

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
    device = check_envelope(key, value, record_headers, SCHEMA_HEADERS.get(kind),
                            MAX_PAYLOAD_BYTES)
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


# --------------------------------------------------------------------------- in the runner
# The bound towers this process consumes, by name. Registered by StreamConfig (one per
# process in practice: the ingest replica's model); a name bound twice must agree.
_BOUND: dict[str, BoundTowerConfig] = {}
_BOUND_LOCK = threading.Lock()


def register(cfg: BoundTowerConfig) -> None:
    """Make ``cfg``'s sensor known to the core's decoders, windowers and featurizers.

    Idempotent for the same config; ``ConfigError`` if the name is bound to another one
    (two models in one process that disagree on what ``sensors.<name>`` carries)."""
    if not isinstance(cfg, BoundTowerConfig):
        raise ConfigError(f"not a bound tower config: {type(cfg).__name__}")
    with _BOUND_LOCK:
        known = _BOUND.get(cfg.modality)
        if known is not None and known != cfg:
            raise ConfigError(f"sensor {cfg.modality!r} is already bound to another tower "
                              f"config ({known.kind}, {known.input_spec()}) in this process")
        _BOUND[cfg.modality] = cfg


def bound_config(name: str) -> BoundTowerConfig | None:
    """The registered tower config of sensor ``name`` (None: not a bound sensor here)."""
    return _BOUND.get(name)


def decode_bound(name: str, key: bytes | None, value: bytes | None,
                 record_headers: Sequence[tuple[str, bytes]] | None, *, partition: int,
                 offset: int, now_ns: int, max_future_ns: int = 60 * NS_PER_S,
                 frame_interval_ns: int = 250_000_000, topic: str = "") -> list[SensorChunk]:
    """Decode a ``sensors.<name>`` record of a registered bound sensor into carrier chunks.

    The record's kind is the tower's, not the record's say-so: a frame record on a series
    sensor's topic is ``bad_schema``, like a record of an unknown sensor."""
    cfg = _BOUND.get(name)
    if cfg is None:
        raise RecordError("bad_schema", f"unknown modality {name!r} (no bound tower of "
                          "that name in this model)")
    return decode(cfg.kind, key, value, record_headers, partition=partition, offset=offset,
                  now_ns=now_ns, topic=topic, max_future_ns=max_future_ns,
                  frame_interval_ns=frame_interval_ns)


class NamedWindower(Windower):
    """The core's windower under a carrier spec whose windows carry the sensor's name.

    Chunks arrive as the carrier modality (what the windower's semantics key on); every
    window key it hands out (add results, closed windows, open windows) names the sensor,
    so offsets, event ids, batching, labels and restart state are the sensor's own.
    """

    def __init__(self, name: str, spec: WindowSpec, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        cfg = _BOUND.get(name)
        if cfg is not None and spec.modality != CARRIER[cfg.kind]:
            raise ConfigError(f"{name}: a {cfg.kind} sensor is windowed as "
                              f"{CARRIER[cfg.kind]}, not {spec.modality}")
        self.name = name
        super().__init__(spec, *args, **kwargs)

    @property
    def modality(self) -> str:
        """The sensor's name (the windows' modality)."""
        return self.name

    def _key(self, device_id: str, rng: tuple[int, int]) -> WindowKey:
        return WindowKey(device_id, self.name, rng[0], rng[1])


def window_spec_for(name: str, **overrides) -> WindowSpec:  # noqa: ANN003
    """The carrier :class:`WindowSpec` of a registered sensor, as ``bind`` windows it
    (the tower's window, half-window hop), with the runner's settings in ``overrides``
    (``hop_ns``, lateness, idle timeout, coverage, ...)."""
    cfg = _BOUND.get(name)
    if cfg is None:
        raise ConfigError(f"{name!r} is not a bound sensor of this model")
    spec = window_spec(cfg)
    params = {"hop_ns": spec.hop_ns, **overrides}
    try:
        return WindowSpec(spec.modality, spec.size_ns, **params)
    except TypeError as exc:
        raise ConfigError(f"bad window override for {name}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class BoundInput:
    """A bound sensor's closed window, kept whole until its tower's featurizer runs."""

    window: ClosedWindow


def featurize_bound(name: str, inputs: Sequence[object]) -> torch.Tensor:
    """(B, *input_shape) tower inputs of a registered sensor's windows, as bind made them."""
    cfg = _BOUND.get(name)
    if cfg is None:
        raise FeatureError(f"no bound tower named {name!r} in this process", "bad_shape")
    windows = []
    for item in inputs:
        if not isinstance(item, BoundInput):
            raise TypeError(f"expected BoundInput, got {type(item).__name__}")
        windows.append(item.window)
    return torch.stack([tower_input(w, cfg) for w in windows])
