"""Sensor record codec: Arrow IPC stream payloads in and out, validated against the contract.

:func:`decode_record` turns one Kafka record of ``sensors.<modality>`` into
:class:`~streambind.stream.chunks.SensorChunk` objects or raises
:class:`~streambind.errors.RecordError` with the dead-letter reason. The limits (payload
size, rows, encodings, sample rates, frame size) come from the schema files in
``schemas/``. :func:`encode_columns` is the producer side (simulator, tests, benchmarks).

Frame spans: a frame covers ``[ts_ns, ts_ns + interval)`` where the interval is the median
spacing of the frames in the same record, or ``frame_interval_ns`` for a single-frame
record, so the span depends on the record alone and a replay rebuilds identical windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from streambind.errors import FeatureError, RecordError
from streambind.stream.chunks import MODALITIES, SensorChunk, SourceRecord
from streambind.stream.ipc import read_ipc
from streambind.stream.ipc_flat import FlatBatch, read_flat
from streambind.stream.schemas import limits, schema_header, sensor_schema
from streambind.units import NS_PER_S

MAX_DETAIL_CHARS = 500
IMU_COLUMNS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
# Dead-letter reason codes this module produces (see schemas/README.md).
REASONS = (
    "bad_schema",
    "decode_error",
    "too_large",
    "bad_shape",
    "bad_encoding",
    "bad_rate",
    "non_finite",
    "future_timestamp",
    "bad_key",
)
__all__ = ["read_ipc"]  # re-exported: the bounded IPC reader lives in streambind.stream.ipc


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """Consumer-side validation settings beyond the schema files' limits."""

    max_future_ns: int = 60 * NS_PER_S
    frame_interval_ns: int = 250_000_000
    imu_default_rate_hz: float = 100.0


def schema_headers(modality: str) -> list[tuple[str, bytes]]:
    """The Kafka headers a producer puts on a ``sensors.<modality>`` record."""
    return [("schema", schema_header(modality).encode())]


def encode_columns(modality: str, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> bytes:
    """Encode columns (field name -> values) as an Arrow IPC stream with the modality's schema."""
    schema = sensor_schema(modality)
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    return encode_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))


def encode_batch(batch: pa.RecordBatch | pa.Table) -> bytes:
    """Serialize a record batch or table as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write(batch)
    return sink.getvalue().to_pybytes()


def _check_schema(table: pa.Table, modality: str) -> None:
    for field in sensor_schema(modality):
        idx = table.schema.get_field_index(field.name)
        if idx < 0:
            raise RecordError("bad_schema", f"missing field {field.name!r}")
        actual = table.schema.field(idx).type
        if actual != field.type:
            raise RecordError("bad_schema", f"field {field.name!r} is {actual}, want {field.type}")
        if table.column(idx).null_count:
            raise RecordError("bad_schema", f"field {field.name!r} has nulls")


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def check_envelope(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    want_schema: str | None,
    max_payload_bytes: int,
) -> str:
    """The device id of a record whose schema header, size and key are valid.

    Raises :class:`RecordError` (``bad_schema``, ``bad_shape``, ``too_large``, ``bad_key``)
    before anything of the body is read; shared by the six modalities and bound sensors.
    """
    got = _header(headers, "schema")
    if want_schema is None or got is None or got.decode("utf-8", "replace") != want_schema:
        raise RecordError("bad_schema", f"header schema={got!r}, want {want_schema!r}")
    if value is None or len(value) == 0:
        raise RecordError("bad_shape", "empty value")
    if len(value) > max_payload_bytes:
        raise RecordError("too_large", f"{len(value)} bytes > {max_payload_bytes}")
    try:
        device = key.decode("utf-8") if key else ""
    except UnicodeDecodeError as exc:
        raise RecordError("bad_key", "key is not UTF-8") from exc
    if not device:
        raise RecordError("bad_key", "missing key (device id)")
    return device


def decode_record(
    modality: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    *,
    partition: int,
    offset: int,
    now_ns: int,
    options: DecodeOptions = DecodeOptions(),  # noqa: B008 - frozen, immutable default
    topic: str = "",
) -> list[SensorChunk]:
    """Decode and validate one ``sensors.<modality>`` record into chunks.

    Raises :class:`RecordError` with a reason from :data:`REASONS`. Audio and frame records
    give one chunk per row; an IMU record gives one chunk holding all its samples. Frames
    are checked (size, payload length or image header) but stay encoded; every chunk
    references its record (``source``, with ``topic``) for a later dead letter.
    """
    if modality not in MODALITIES:  # a sensor bound by `streambind bind` (or unknown)
        from streambind.stream import custom

        return custom.decode_bound(modality, key, value, headers, partition=partition,
                                   offset=offset, now_ns=now_ns, topic=topic,
                                   max_future_ns=options.max_future_ns,
                                   frame_interval_ns=options.frame_interval_ns)
    lim = limits(modality)
    device = check_envelope(key, value, headers, schema_header(modality),
                            int(lim["max_payload_bytes"]))
    # The decoded (decompressed) body is bounded like the payload, checked before decoding.
    max_decoded = int(lim.get("max_decoded_bytes", lim["max_payload_bytes"]))
    max_rows = int(lim["max_rows"])
    # The common record (one uncompressed batch of exactly the modality's schema) is read
    # without Arrow objects; anything else takes the general bounded reader, which also
    # gives every dead-letter reason.
    cols: FlatBatch | _TableColumns | None = read_flat(value, sensor_schema(modality),
                                                       max_rows, max_decoded)
    if cols is None:
        buf = pa.py_buffer(value)
        table = read_ipc(buf, max_rows, max_decoded)
        _check_schema(table, modality)
        cols = _TableColumns(table, buf)
    if cols.num_rows == 0:
        raise RecordError("bad_shape", "no rows")
    if not cols.all_equal("device_id", device):
        devices = set(cols.values("device_id"))  # (rows are few: <= max_rows)
        raise RecordError("bad_key", f"rows name devices {sorted(devices)[:3]}, key {device!r}")
    ts = cols.array("ts_ns")
    ts_max = int(ts.max())
    if ts_max > now_ns + options.max_future_ns:
        ahead_s = (ts_max - now_ns) / NS_PER_S
        raise RecordError("future_timestamp", f"{ahead_s:.1f} s ahead of the consumer clock")
    seq = cols.array("seq")
    src = SourceRecord(topic, partition, offset, key, value, headers)
    if modality == "imu":
        return [_imu_chunk(cols, device, ts, seq, lim, src, options)]
    if modality == "audio":
        return _audio_chunks(cols, device, ts, seq, lim, src)
    return _frame_chunks(modality, cols, device, ts, seq, lim, src, options)


class _TableColumns:
    """A table read by the general reader behind :class:`FlatBatch`'s interface."""

    __slots__ = ("table", "whole", "num_rows", "in_record")

    def __init__(self, table: pa.Table, whole: pa.Buffer) -> None:
        self.table = table
        self.whole = whole
        self.num_rows = table.num_rows
        self.in_record = True  # binary values lie in the record's bytes (set by views)

    def array(self, name: str) -> np.ndarray:
        return self.table.column(name).to_numpy()

    def values(self, name: str) -> list:
        return self.table.column(name).to_pylist()

    def views(self, name: str) -> list[memoryview]:
        views, self.in_record = _binary_views(self.table.column(name), self.whole)
        return views

    def all_equal(self, name: str, text: str) -> bool:
        return set(self.values(name)) == {text}


def _median(values: np.ndarray) -> float:
    """``np.median`` of a small 1-D array, without its overhead."""
    ordered = np.sort(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (float(ordered[mid - 1]) + float(ordered[mid])) / 2


def _audio_chunks(
    cols: FlatBatch | _TableColumns, device: str, ts: np.ndarray, seq: np.ndarray,
    lim: dict[str, Any], src: SourceRecord,
) -> list[SensorChunk]:
    from streambind.features import decode_pcm

    rates = cols.values("sample_rate")
    channels = cols.values("channels")
    encodings = cols.values("encoding")
    datas = cols.views("data")
    ts_l, seq_l = ts.tolist(), seq.tolist()
    max_s = lim["max_chunk_duration_ms"] / 1000.0
    # Mono 16-bit PCM stays as sent, a zero-copy int16 view where the payload lies in the
    # record (half the memory of float32 in open windows; assembly scales it exactly as
    # decode_pcm would). Every other chunk is decoded to float32 mono now.
    raw = [enc == "pcm_s16le" and chans == 1 for enc, chans in zip(encodings, channels,
                                                                    strict=True)]
    held = sum(len(d) for d, r in zip(datas, raw, strict=True) if r) if cols.in_record else 0
    share = max(len(src.value) - held, 0) // len(datas)
    chunks = []
    rows = zip(rates, channels, encodings, datas, raw, strict=True)
    for i, (rate, chans, enc, data, keep_pcm) in enumerate(rows):
        if enc not in lim["encodings"]:
            raise RecordError("bad_encoding", f"audio encoding {enc!r}")
        if rate not in lim["sample_rates_hz"]:
            raise RecordError("bad_rate", f"sample rate {rate} Hz not in {lim['sample_rates_hz']}")
        if not 1 <= chans <= lim["max_channels"]:
            raise RecordError("bad_shape", f"{chans} channels")
        if keep_pcm and len(data) % 2:
            raise RecordError("decode_error", f"audio: {len(data)} bytes is not a whole "
                              "number of 1-channel pcm_s16le frames")
        try:
            samples = np.frombuffer(data, "<i2") if keep_pcm else decode_pcm(enc, chans, data)
        except FeatureError as exc:
            raise RecordError(exc.reason, str(exc)) from exc
        if samples.size == 0:
            raise RecordError("bad_shape", "audio chunk without samples")
        if samples.size / rate > max_s:
            raise RecordError("too_large", f"audio chunk of {samples.size / rate:.3f} s")
        if samples.dtype.kind == "f" and not np.isfinite(samples).all():
            raise RecordError("non_finite", "audio samples hold NaN or infinity")
        start = ts_l[i]
        end = start + round(samples.size * NS_PER_S / rate)
        chunks.append(SensorChunk("audio", device, start, end, seq_l[i], samples,
                                  float(rate), None, src.partition, src.offset,
                                  source=src, source_bytes=share))
    return chunks


def _imu_chunk(
    cols: FlatBatch | _TableColumns, device: str, ts: np.ndarray, seq: np.ndarray,
    lim: dict[str, Any], src: SourceRecord, options: DecodeOptions,
) -> SensorChunk:
    data = np.empty((len(ts), len(IMU_COLUMNS)), np.float32)  # (N, 6)
    for j, name in enumerate(IMU_COLUMNS):
        data[:, j] = cols.array(name)
    if not np.isfinite(data).all():
        raise RecordError("non_finite", "IMU values hold NaN or infinity")
    ts_sorted = ts.astype(np.int64)  # a copy: the chunk outlives the record's buffers
    if len(ts_sorted) > 1:
        deltas = np.diff(ts_sorted)
        if deltas.min() <= 0:  # not strictly in order: sort (stable)
            order = np.argsort(ts_sorted, kind="stable")
            ts_sorted, data = ts_sorted[order], data[order]
            deltas = np.diff(ts_sorted)
            if deltas.min() <= 0:
                raise RecordError("bad_shape", "IMU rows with repeated timestamps")
        rate = NS_PER_S / _median(deltas)
        if not lim["min_sample_rate_hz"] <= rate <= lim["max_sample_rate_hz"]:
            raise RecordError("bad_rate", f"IMU rate {rate:.1f} Hz out of range")
    else:
        rate = options.imu_default_rate_hz
    period_ns = round(NS_PER_S / rate)
    return SensorChunk("imu", device, int(ts_sorted[0]), int(ts_sorted[-1]) + period_ns,
                       int(seq.min()), data, rate, ts_sorted, src.partition, src.offset,
                       source=src, source_bytes=len(src.value))


def _binary_views(column: pa.ChunkedArray, whole: pa.Buffer) -> tuple[list[memoryview], bool]:
    """The values of a binary column as memoryviews (no copy), and whether they lie in
    ``whole`` (the record's own bytes) rather than in a decompressed buffer."""
    views: list[memoryview] = []
    inside = True
    lo, hi = whole.address, whole.address + whole.size
    for arr in column.chunks:
        _, offsets_buf, values_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(arr) + 1,
                                offset=4 * arr.offset)
        if values_buf is None:
            views.extend(memoryview(b"") for _ in range(len(arr)))
            continue
        inside = inside and lo <= values_buf.address and values_buf.address + values_buf.size <= hi
        mem = memoryview(values_buf)
        views.extend(mem[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    return views, inside


def _frame_chunks(
    modality: str, cols: FlatBatch | _TableColumns, device: str, ts: np.ndarray,
    seq: np.ndarray, lim: dict[str, Any], src: SourceRecord, options: DecodeOptions,
) -> list[SensorChunk]:
    from streambind.features.decode import check_frame

    widths = cols.values("width")
    heights = cols.values("height")
    encodings = cols.values("encoding")
    datas = cols.views("data")
    zero_copy = cols.in_record
    interval_ns = options.frame_interval_ns
    if len(ts) > 1:
        spacing = np.diff(np.sort(ts))
        spacing = spacing[spacing > 0]
        if spacing.size:
            interval_ns = int(_median(spacing))
    ts_l, seq_l = ts.tolist(), seq.tolist()
    # The record's bytes not already counted as frame payload, shared among its frames.
    rest = len(src.value) - (sum(len(d) for d in datas) if zero_copy else 0)
    share = max(rest, 0) // len(datas)
    chunks = []
    for i, (w, h, enc, data) in enumerate(zip(widths, heights, encodings, datas, strict=True)):
        if enc not in lim["encodings"]:
            raise RecordError("bad_encoding", f"{modality} encoding {enc!r}")
        if not (1 <= w <= lim["max_width"] and 1 <= h <= lim["max_height"]):
            raise RecordError("bad_shape", f"{modality} frame {w}x{h}")
        try:
            check_frame(enc, w, h, data)
        except FeatureError as exc:
            raise RecordError(exc.reason, str(exc)) from exc
        if enc == "f32_c" and not np.isfinite(np.frombuffer(data, dtype="<f4")).all():
            raise RecordError("non_finite", "thermal frame holds NaN or infinity")  # no copy
        start = ts_l[i]
        chunks.append(SensorChunk(modality, device, start, start + interval_ns, seq_l[i],
                                  data, None, None, src.partition, src.offset, encoding=enc,
                                  width=w, height=h, source=src, source_bytes=share))
    return chunks


def dlq_headers(
    headers: Sequence[tuple[str, bytes]] | None, error: RecordError, topic: str,
    partition: int, offset: int,
) -> list[tuple[str, bytes]]:
    """The original headers plus the dead-letter headers of the wire contract."""
    detail = error.detail if len(error.detail) <= MAX_DETAIL_CHARS else (
        error.detail[: MAX_DETAIL_CHARS - 3] + "...")
    return [
        *(headers or ()),
        ("error.reason", error.reason.encode()),
        ("error.detail", detail.encode("utf-8", "replace")),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]

