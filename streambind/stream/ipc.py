"""Bounded reading of Arrow IPC stream payloads.

An IPC record batch body may be compressed (LZ4 frame or ZSTD, per buffer), so a record of
a few kB can decompress to gigabytes. :func:`read_ipc` therefore looks at every message
before Arrow reads it: the message metadata (a flatbuffer) lists the row count and the
body buffers, and a compressed buffer starts with its uncompressed length (int64, little
endian; -1 = stored uncompressed). The decoded size and the rows are summed over the
stream and checked against the limits first; only then are the batches read (and
decompressed). Malformed metadata is a ``decode_error``, never an exception of another kind.

The flatbuffer layout read here is Arrow's ``Message.fbs``/``Schema.fbs`` (format version
V4/V5): ``Message{version, header_type, header, bodyLength, custom_metadata}``,
``RecordBatch{length, nodes, buffers, compression, ...}``, ``DictionaryBatch{id, data, ...}``.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from streambind.errors import RecordError

_HEADER_DICTIONARY_BATCH = 2
_HEADER_RECORD_BATCH = 3
_BUFFER_STRUCT_BYTES = 16  # Buffer{offset: int64, length: int64}
_UNCOMPRESSED = -1  # a compressed buffer's length prefix when its body is stored raw


class _Flat:
    """Just enough of a flatbuffer reader, every read bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise RecordError("decode_error", "Arrow IPC message metadata is truncated")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self.read("<I", 0)

    def field(self, table: int, index: int) -> int:
        """Position of field ``index`` of the table at ``table``, or 0 when absent."""
        vtable = table - self.read("<i", table)
        vt_size = self.read("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return 0
        off = self.read("<H", vtable + slot)
        return table + off if off else 0

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        pos = self.field(table, index)
        return self.read(fmt, pos) if pos else default

    def ref(self, table: int, index: int) -> int:
        """The table or vector a reference field points to, or 0 when absent."""
        pos = self.field(table, index)
        return pos + self.read("<I", pos) if pos else 0


def batch_sizes(metadata: bytes, body: bytes | memoryview) -> tuple[int, int]:
    """``(rows, decoded body bytes)`` of one IPC message (zeros for a schema message)."""
    flat = _Flat(metadata)
    message = flat.root()
    kind = flat.scalar(message, 1, "<B")
    header = flat.ref(message, 2)
    if kind not in (_HEADER_RECORD_BATCH, _HEADER_DICTIONARY_BATCH) or not header:
        return 0, 0
    batch = header if kind == _HEADER_RECORD_BATCH else flat.ref(header, 1)
    if not batch:
        raise RecordError("decode_error", "Arrow IPC dictionary batch without data")
    rows = flat.scalar(batch, 0, "<q") if kind == _HEADER_RECORD_BATCH else 0
    compressed = bool(flat.ref(batch, 3))
    buffers = flat.ref(batch, 2)
    count = flat.read("<I", buffers) if buffers else 0
    view = memoryview(body).cast("B")
    decoded = 0
    for i in range(count):
        pos = buffers + 4 + i * _BUFFER_STRUCT_BYTES
        offset, length = flat.read("<q", pos), flat.read("<q", pos + 8)
        if offset < 0 or length < 0 or offset + length > len(view):
            raise RecordError("decode_error", "Arrow IPC buffer outside the message body")
        if not compressed or length == 0:
            decoded += length
            continue
        if length < 8:
            raise RecordError("decode_error", "Arrow IPC compressed buffer without its length")
        (size,) = struct.unpack_from("<q", view, offset)
        if size == _UNCOMPRESSED:
            size = length - 8
        elif size < 0:
            raise RecordError("decode_error", f"Arrow IPC buffer claims {size} bytes")
        decoded += size
    return rows, decoded


def check_ipc(value: bytes, max_rows: int, max_decoded_bytes: int) -> None:
    """Raise ``too_large`` when the stream holds more rows or decodes to more bytes than the
    limits (before anything is decompressed); ``decode_error`` when it is no IPC stream."""
    rows = decoded = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(value))
        for message in reader:
            body = message.body
            n, size = batch_sizes(message.metadata.to_pybytes(),
                                  memoryview(body) if body is not None else b"")
            rows += n
            decoded += size
            if rows > max_rows:
                raise RecordError("too_large", f"more than {max_rows} rows")
            if decoded > max_decoded_bytes:
                raise RecordError("too_large", f"decodes to more than {max_decoded_bytes} bytes")
    except RecordError:
        raise
    except (pa.ArrowException, ValueError, OSError, TypeError) as exc:
        raise RecordError("decode_error", f"not an Arrow IPC stream: {exc}") from exc


def read_ipc(value: bytes, max_rows: int, max_decoded_bytes: int | None = None) -> pa.Table:
    """Read an Arrow IPC stream payload within the limits; ``decode_error`` or ``too_large``.

    ``max_decoded_bytes`` bounds the decoded (decompressed) body size; None: ``len(value)``
    times 1, i.e. the payload may not grow at all when decoded.
    """
    check_ipc(value, max_rows, len(value) if max_decoded_bytes is None else max_decoded_bytes)
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(value))
        batches = list(reader)
        if sum(b.num_rows for b in batches) > max_rows:
            raise RecordError("too_large", f"more than {max_rows} rows")
        return pa.Table.from_batches(batches, schema=reader.schema)
    except RecordError:
        raise
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise RecordError("decode_error", f"not an Arrow IPC stream: {exc}") from exc
