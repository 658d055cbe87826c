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


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


class _Flat:
    """Just enough of a flatbuffer reader, every read bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, fmt: struct.Struct, pos: int) -> int:
        if pos < 0 or pos + fmt.size > self.size:
            raise RecordError("decode_error", "Arrow IPC message metadata is truncated")
        return fmt.unpack_from(self.data, pos)[0]

    def root(self) -> int:
        return self.read(_U32, 0)

    def field(self, table: int, index: int) -> int:
        """Position of field ``index`` of the table at ``table``, or 0 when absent."""
        vtable = table - self.read(_I32, table)
        slot = 4 + 2 * index
        if slot + 2 > self.read(_U16, vtable):
            return 0
        off = self.read(_U16, vtable + slot)
        return table + off if off else 0

    def scalar(self, table: int, index: int, fmt: struct.Struct, default: int = 0) -> int:
        pos = self.field(table, index)
        return self.read(fmt, pos) if pos else default

    def ref(self, table: int, index: int) -> int:
        """The table or vector a reference field points to, or 0 when absent."""
        pos = self.field(table, index)
        return pos + self.read(_U32, pos) if pos else 0


def batch_sizes(metadata: bytes, body: bytes | memoryview | pa.Buffer | None) -> tuple[int, int]:
    """``(rows, decoded body bytes)`` of one IPC message (zeros for a schema message).

    Uncompressed, the decoded size is the body's own size; compressed, the sum of the
    buffers' uncompressed lengths (their first 8 bytes).
    """
    flat = _Flat(metadata)
    message = flat.root()
    kind = flat.scalar(message, 1, _U8)
    header = flat.ref(message, 2)
    if kind not in (_HEADER_RECORD_BATCH, _HEADER_DICTIONARY_BATCH) or not header:
        return 0, 0
    batch = header if kind == _HEADER_RECORD_BATCH else flat.ref(header, 1)
    if not batch:
        raise RecordError("decode_error", "Arrow IPC dictionary batch without data")
    rows = flat.scalar(batch, 0, _I64) if kind == _HEADER_RECORD_BATCH else 0
    view = memoryview(body if body is not None else b"").cast("B")
    if not flat.ref(batch, 3):  # no BodyCompression: buffers are stored as they decode
        return rows, len(view)
    buffers = flat.ref(batch, 2)
    count = flat.read(_U32, buffers) if buffers else 0
    decoded = 0
    for i in range(count):
        pos = buffers + 4 + i * _BUFFER_STRUCT_BYTES
        offset, length = flat.read(_I64, pos), flat.read(_I64, pos + 8)
        if offset < 0 or length < 0 or offset + length > len(view):
            raise RecordError("decode_error", "Arrow IPC buffer outside the message body")
        if length == 0:
            continue
        if length < 8:
            raise RecordError("decode_error", "Arrow IPC compressed buffer without its length")
        (size,) = _I64.unpack_from(view, offset)
        if size == _UNCOMPRESSED:
            size = length - 8
        elif size < 0:
            raise RecordError("decode_error", f"Arrow IPC buffer claims {size} bytes")
        decoded += size
    return rows, decoded


def _as_buffer(value: bytes | pa.Buffer) -> pa.Buffer:
    return value if isinstance(value, pa.Buffer) else pa.py_buffer(value)


def read_ipc(
    value: bytes | pa.Buffer, max_rows: int, max_decoded_bytes: int | None = None
) -> pa.Table:
    """Read an Arrow IPC stream payload within the limits; ``decode_error`` or ``too_large``.

    Each record batch message is checked (rows, decoded size) before Arrow reads it, so
    nothing is decompressed past the limits. ``max_decoded_bytes`` bounds the decoded body
    size over the stream; None: the payload's own size (it may not grow when decoded).
    Dictionary batches are refused (no sensor schema has dictionary fields).
    """
    buf = _as_buffer(value)
    limit = buf.size if max_decoded_bytes is None else max_decoded_bytes
    schema: pa.Schema | None = None
    batches: list[pa.RecordBatch] = []
    rows = decoded = 0
    try:
        for message in pa.ipc.MessageReader.open_stream(buf):
            kind = message.type
            if kind == "schema" and schema is None:
                schema = pa.ipc.read_schema(message)
                continue
            if kind != "record batch" or schema is None:
                raise RecordError("decode_error", f"unexpected Arrow IPC {kind} message")
            n, size = batch_sizes(message.metadata.to_pybytes(), message.body)
            rows += n
            decoded += size
            if rows > max_rows:
                raise RecordError("too_large", f"more than {max_rows} rows")
            if decoded > limit:
                raise RecordError("too_large", f"decodes to more than {limit} bytes")
            batch = pa.ipc.read_record_batch(message, schema)  # zero copy when raw
            # Arrow trusts the offsets and string bytes it reads: a damaged record could
            # otherwise crash a later read (out-of-range offsets) or decode as bad UTF-8.
            batch.validate(full=True)
            batches.append(batch)
        if schema is None:
            raise RecordError("decode_error", "not an Arrow IPC stream: no schema")
        return pa.Table.from_batches(batches, schema=schema)
    except RecordError:
        raise
    except (pa.ArrowException, ValueError, OSError, TypeError) as exc:
        raise RecordError("decode_error", f"not an Arrow IPC stream: {exc}") from exc


def check_ipc(value: bytes | pa.Buffer, max_rows: int, max_decoded_bytes: int) -> None:
    """Raise ``too_large`` when the stream holds more rows or decodes to more bytes than the
    limits (without decompressing anything past them); ``decode_error`` when it is no IPC
    stream."""
    read_ipc(value, max_rows, max_decoded_bytes)
