"""The consumer's fast record path (stream/ipc_flat.py) agrees with the general reader.

Every record the simulator writes takes the fast path, and its chunks equal those the
general (Arrow) path makes from the same bytes; every variant the fast path does not take
(compression, other schemas, nulls, several batches) falls back and gets the same result,
and damaged payloads never raise anything but a RecordError.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pyarrow as pa
import pytest

from streambind.errors import RecordError
from streambind.features.decode import image_size
from streambind.sim.simulator import generate
from streambind.sim.streams import aligned_origin_ns
from streambind.stream import ipc_flat, records
from streambind.stream.ipc import read_ipc
from streambind.stream.records import DecodeOptions, decode_record, encode_batch
from streambind.stream.schemas import sensor_schema

MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
OPTS = DecodeOptions(max_future_ns=10**18)


@pytest.fixture(scope="module")
def sim_records():
    items = generate(2, 3, modalities=MODALITIES, seed=3, start_ns=aligned_origin_ns(),
                     topics={m: m for m in MODALITIES}, drop_share=0.0, reorder_share=0.0)
    out: dict[str, list] = {m: [] for m in MODALITIES}
    for _, topic, rec in items:
        out[topic].append(rec)
    return out


def _decode(modality, rec, *, fast=True, value=None):
    value = rec.value if value is None else value
    saved = records.read_flat
    if not fast:
        records.read_flat = lambda *a, **k: None  # the general path only
    try:
        return decode_record(modality, rec.key, value, rec.headers, partition=0, offset=7,
                             now_ns=time.time_ns(), options=OPTS)
    finally:
        records.read_flat = saved


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in ("modality", "device_id", "ts_ns", "end_ns", "seq", "sample_rate",
                     "encoding", "width", "height", "partition", "offset", "source_bytes"):
            assert getattr(x, name) == getattr(y, name), name
        assert bytes(memoryview(np.asarray(x.data) if isinstance(x.data, np.ndarray)
                                else x.data).cast("B")) == bytes(
            memoryview(np.asarray(y.data) if isinstance(y.data, np.ndarray)
                       else y.data).cast("B"))
        if x.sample_ts_ns is not None:
            assert np.array_equal(x.sample_ts_ns, y.sample_ts_ns)


def _same_outcome(modality, rec, value):
    """Decoding ``value`` gives the same chunks, or the same reject, on both paths."""

    def outcome(fast):
        try:
            return _decode(modality, rec, fast=fast, value=value)
        except RecordError as err:
            return err.reason

    fast, general = outcome(True), outcome(False)
    if isinstance(general, str):
        assert fast == general
    else:
        _same(fast, general)


@pytest.mark.parametrize("modality", MODALITIES)
def test_simulated_records_take_the_fast_path_and_match_the_general_one(sim_records, modality):
    schema = sensor_schema(modality)
    for rec in sim_records[modality]:
        assert ipc_flat.read_flat(rec.value, schema, 10_000, 10**9) is not None
        _same(_decode(modality, rec), _decode(modality, rec, fast=False))


def _table(rec):
    return read_ipc(rec.value, 10_000)


def _compressed(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    opts = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=opts) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _two_batches(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 1))
        writer.write_table(table.slice(1))
    return sink.getvalue().to_pybytes()


def _nullable(table: pa.Table) -> bytes:
    schema = pa.schema([f.with_nullable(True) for f in table.schema],
                       metadata=table.schema.metadata)
    return encode_batch(table.cast(schema))


def _with_null(table: pa.Table) -> bytes:
    schema = pa.schema([f.with_nullable(True) for f in table.schema])
    cols = table.cast(schema).columns
    idx = table.schema.get_field_index("seq")
    cols[idx] = pa.chunked_array([pa.array([None] * table.num_rows, pa.uint64())])
    return encode_batch(pa.Table.from_arrays(cols, schema=schema))


def _extra_field(table: pa.Table) -> bytes:
    return encode_batch(table.append_column("extra", pa.array([1] * table.num_rows)))


@pytest.mark.parametrize("variant", [_compressed, _two_batches, _nullable, _with_null,
                                     _extra_field])
def test_variants_fall_back_to_the_general_reader_with_the_same_outcome(sim_records, variant):
    rec = sim_records["imu"][0]  # IMU: several rows per record
    value = variant(_table(rec))
    assert ipc_flat.read_flat(value, sensor_schema("imu"), 10_000, 10**9) is None
    _same_outcome("imu", rec, value)


def test_damaged_payloads_raise_only_record_errors(sim_records):
    rnd = random.Random(0)
    for modality in ("imu", "vision", "audio"):
        rec = sim_records[modality][0]
        value = rec.value
        for cut in range(0, len(value), max(1, len(value) // 200)):
            try:
                _decode(modality, rec, value=value[:cut])
            except RecordError:
                pass
        for _ in range(400):
            damaged = bytearray(value)
            for _ in range(rnd.randint(1, 4)):
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
            try:
                fast = _decode(modality, rec, value=bytes(damaged))
            except RecordError as err:
                fast = err.reason
            try:
                general = _decode(modality, rec, value=bytes(damaged), fast=False)
            except RecordError as err:
                general = err.reason
            if isinstance(general, str) or isinstance(fast, str):
                # The fast path never accepts what the general path rejects.
                assert isinstance(fast, str), (general, fast)


def test_row_limit_and_device_check_hold_on_the_fast_path(sim_records):
    rec = sim_records["imu"][0]
    assert ipc_flat.read_flat(rec.value, sensor_schema("imu"), 1, 10**9) is None  # > 1 row
    with pytest.raises(RecordError) as err:
        decode_record("imu", b"someone-else", rec.value, rec.headers, partition=0, offset=0,
                      now_ns=time.time_ns(), options=OPTS)
    assert err.value.reason == "bad_key"


def test_remembered_framing_is_used_only_for_the_same_bytes_up_to_the_body(sim_records):
    """A record framed and described exactly like one read before skips the message loop;
    the row and body limits still apply, and any other ending takes the loop again."""
    rec = sim_records["audio"][0]
    schema = sensor_schema("audio")
    ipc_flat._FRAMES.clear()
    first = ipc_flat.read_flat(rec.value, schema, 10_000, 10**9)
    assert first is not None and len(ipc_flat._FRAMES) == 1
    data = memoryview(rec.value)
    found = ipc_flat._known(data, schema, 10_000, 10**9)
    assert found is not None and found[1] == first.num_rows
    assert ipc_flat._known(data, schema, 0, 10**9) is None  # over the row limit
    assert ipc_flat._known(data, schema, 10_000, 1) is None  # over the body limit
    assert ipc_flat.read_flat(rec.value, schema, 10_000, 1) is None
    for tail in (b"\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff\x00\x00\x00\x01"):
        value = rec.value + tail
        assert ipc_flat._known(memoryview(value), schema, 10_000, 10**9) is None
        _same_outcome("audio", rec, value)
    again = ipc_flat.read_flat(rec.value, schema, 10_000, 10**9)
    assert again is not None
    assert bytes(again.views("data")[0]) == bytes(first.views("data")[0])


def test_image_size_reads_jpeg_and_png_headers():
    import io

    from PIL import Image

    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for fmt, enc in (("JPEG", "jpeg"), ("PNG", "png")):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format=fmt)
        assert image_size(enc, buf.getvalue()) == (64, 48)
        assert image_size(enc, buf.getvalue()[:10]) is None
    assert image_size("jpeg", b"\xff\xd8\xff\xd9") is None  # end of image, no frame header
