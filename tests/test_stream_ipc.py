"""Compressed Arrow IPC bodies are bounded before they are decompressed."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from streambind.errors import RecordError
from streambind.stream.ipc import batch_sizes, check_ipc, read_ipc
from streambind.stream.records import decode_record, schema_headers
from streambind.stream.schemas import limits, sensor_schema

S = 1_000_000_000
NOW = time.time_ns()


def ipc(table: pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def audio_table(n_bytes: int, rows: int = 1) -> pa.Table:
    schema = sensor_schema("audio")
    cols = {"device_id": ["dev"] * rows, "ts_ns": [NOW - S] * rows, "seq": list(range(rows)),
            "sample_rate": [16000] * rows, "channels": [1] * rows,
            "encoding": ["pcm_s16le"] * rows, "data": [b"\0" * n_bytes] * rows}
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                    schema=schema)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_small_record_that_decompresses_past_the_limit_is_too_large(codec):
    limit = limits("audio")["max_payload_bytes"]
    value = ipc(audio_table(16 * 1024 * 1024), codec)  # 16 MB of zeros
    assert len(value) < limit // 8  # well within the payload limit on the wire
    # Arrow itself would inflate it (what the consumer did before the check).
    assert pa.ipc.open_stream(value).read_all().nbytes > 16 * 1024 * 1024
    with pytest.raises(RecordError) as info:
        decode_record("audio", b"dev", value, schema_headers("audio"), partition=0,
                      offset=0, now_ns=NOW)
    assert info.value.reason == "too_large"
    # Refused by the metadata check, which runs before Arrow reads (decompresses) a batch.
    assert "decodes to more than" in info.value.detail


@pytest.mark.parametrize("codec", [None, "lz4", "zstd"])
def test_decoded_sizes_are_read_from_the_metadata(codec):
    table = audio_table(100_000, rows=3)
    value = ipc(table, codec)
    messages = list(pa.ipc.MessageReader.open_stream(pa.py_buffer(value)))
    sizes = [batch_sizes(m.metadata.to_pybytes(), memoryview(m.body) if m.body else b"")
             for m in messages]
    assert sizes[0] == (0, 0)  # the schema message
    rows, decoded = sizes[1]
    assert rows == 3
    assert decoded >= 300_000  # the data column alone
    # A compressed record within the limits still decodes, to the same table.
    assert read_ipc(value, 16, 10_000_000).equals(table)


def test_a_compressed_record_within_the_limits_is_decoded():
    value = ipc(audio_table(3200), "zstd")
    (chunk,) = decode_record("audio", b"dev", value, schema_headers("audio"), partition=0,
                             offset=0, now_ns=NOW)
    assert chunk.data.shape == (1600,)
    assert np.all(chunk.data == 0)


def test_too_many_rows_are_refused_before_reading_and_garbage_is_a_decode_error():
    with pytest.raises(RecordError) as info:
        check_ipc(ipc(audio_table(10, rows=5), "lz4"), max_rows=4, max_decoded_bytes=10**9)
    assert info.value.reason == "too_large"
    value = bytearray(ipc(audio_table(1000), "lz4"))
    value[len(value) // 2:] = b"\xff" * (len(value) - len(value) // 2)  # corrupt metadata/body
    with pytest.raises(RecordError) as info:
        read_ipc(bytes(value), 16, 10**9)
    assert info.value.reason in ("decode_error", "too_large")
    with pytest.raises(RecordError) as info:
        read_ipc(b"not arrow", 16, 10**9)
    assert info.value.reason == "decode_error"
