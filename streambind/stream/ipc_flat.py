"""The consumer's fast path for the common sensor record: one uncompressed batch, known schema.

Nearly every ``sensors.*`` record is an Arrow IPC stream of one schema message and one
uncompressed record batch whose schema is exactly the modality's. For those,
:func:`read_flat` reads the stream framing and the batch's flatbuffer metadata itself and
returns the columns as numpy views of the record's bytes (:class:`FlatBatch`): no Arrow
objects per record, the schema message parsed once per distinct schema (cached by its
bytes), null counts read from the batch's field nodes rather than per column, and a record
whose bytes up to its batch body repeat those of one read before (a producer's records
do: same schema, same sizes) is not walked message by message again. Everything
else (other or extra fields, nullable variants, compression, several batches, nulls,
anything malformed) returns None, and the caller uses the general bounded reader
(:func:`streambind.stream.ipc.read_ipc`), which then reports the precise dead-letter
reason. The fast path therefore never accepts a record the general path would reject.

Every offset and length read here is bounds-checked against the record (buffers inside the
body, the body inside the record, value offsets inside their buffer and non-decreasing).
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa

from streambind.errors import RecordError
from streambind.stream.ipc import _I32, _I64, _U8, _U32, _Flat

_I16 = struct.Struct("<h")
_HEADER_SCHEMA = 1
_HEADER_RECORD_BATCH = 3
_VERSIONS = (3, 4)  # MetadataVersion V4, V5: what Arrow reads
_STRUCT_BYTES = 16  # FieldNode{length, null_count} and Buffer{offset, length}: two int64
_SCHEMA_CACHE_MAX = 256  # distinct schema messages remembered (a fleet sends a handful)

_FIXED: dict[pa.DataType, np.dtype] = {
    t: np.dtype(d) for t, d in [
        (pa.int8(), "<i1"), (pa.int16(), "<i2"), (pa.int32(), "<i4"), (pa.int64(), "<i8"),
        (pa.uint8(), "<u1"), (pa.uint16(), "<u2"), (pa.uint32(), "<u4"), (pa.uint64(), "<u8"),
        (pa.float32(), "<f4"), (pa.float64(), "<f8"),
    ]
}
_BINARY = (pa.string(), pa.binary())  # int32 offsets + values

# Schema message bytes -> whether it is exactly the expected schema (keyed per expected).
_SCHEMAS: dict[tuple[int, bytes], bool] = {}


_Layout = tuple[tuple[str, "np.dtype | None", bool], ...]
_LAYOUTS: dict[int, tuple[pa.Schema, _Layout | None]] = {}  # by id (hashing a schema is slow)


def _layout(schema: pa.Schema) -> _Layout | None:
    """Per field: (name, numpy dtype, False) for fixed width, (name, None, is text) for
    string/binary; None when a field has another type (the fast path is never taken)."""
    hit = _LAYOUTS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    out: list[tuple[str, np.dtype | None, bool]] = []
    for field in schema:
        if field.type in _FIXED:
            out.append((field.name, _FIXED[field.type], False))
        elif field.type in _BINARY:
            out.append((field.name, None, field.type == pa.string()))
        else:
            out = []
            break
    layout = tuple(out) if out else None
    if len(_LAYOUTS) >= _SCHEMA_CACHE_MAX:
        _LAYOUTS.clear()
    _LAYOUTS[id(schema)] = (schema, layout)  # the schema is kept: its id stays unique
    return layout


class FlatBatch:
    """The columns of one record batch as views of the record's bytes.

    ``array(name)``: a fixed-width column as a read-only numpy array (no copy).
    ``views(name)``: a string/binary column's values as memoryviews (no copy).
    ``values(name)``: a column as Python values (str for string columns).
    ``all_equal(name, text)``: every value of a string column is ``text``.
    """

    __slots__ = ("num_rows", "_data", "_cols")
    in_record = True  # binary values are slices of the record's own bytes

    def __init__(self, num_rows: int, data: memoryview,
                 cols: dict[str, tuple[np.ndarray, int, bool]]) -> None:
        self.num_rows = num_rows
        self._data = data
        # name -> (fixed width: the values, -1, False; string/binary: the int32 offsets,
        # start of the values in ``data``, whether the values are text)
        self._cols = cols

    def array(self, name: str) -> np.ndarray:
        """A fixed-width column (read-only view)."""
        return self._cols[name][0]

    def views(self, name: str) -> list[memoryview]:
        """A string/binary column's values, zero copy."""
        offsets, start, _ = self._cols[name]
        data = self._data
        bounds = offsets.tolist()
        return [data[start + a:start + b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def values(self, name: str) -> list:
        """A column as Python values (``str`` for string columns, ``bytes`` for binary)."""
        col, start, text = self._cols[name]
        if start < 0:
            return col.tolist()
        if not text:
            return [bytes(v) for v in self.views(name)]
        try:
            return [bytes(v).decode("utf-8") for v in self.views(name)]
        except UnicodeDecodeError as exc:
            raise RecordError("decode_error", f"column {name!r} is not UTF-8") from exc

    def all_equal(self, name: str, text: str) -> bool:
        """Whether every value of the string column ``name`` equals ``text``."""
        offsets, start, _ = self._cols[name]
        want = text.encode("utf-8")
        n = self.num_rows
        first, last = int(offsets[0]), int(offsets[-1])
        if last - first != n * len(want):
            return False
        if n > 1 and not (np.diff(offsets) == len(want)).all():
            return False
        return self._data[start + first:start + last] == want * n


def _is_expected(meta: bytes, framed: memoryview, expected: pa.Schema) -> bool:
    key = (id(expected), meta)
    hit = _SCHEMAS.get(key)
    if hit is None:
        flat = _Flat(meta)
        header = flat.ref(flat.root(), 2)
        little = bool(header) and flat.scalar(header, 0, _I16) == 0  # Endianness.Little
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(framed))
        except (pa.ArrowException, ValueError, OSError, TypeError):
            return False  # not cached: the general reader reports it
        hit = little and schema.equals(expected, check_metadata=False)
        if len(_SCHEMAS) >= _SCHEMA_CACHE_MAX:
            _SCHEMAS.clear()
        _SCHEMAS[key] = hit
    return hit


def _structs(flat: _Flat, table: int, index: int) -> np.ndarray:
    """A vector of two-int64 structs (FieldNode, Buffer) as an (n, 2) int64 array."""
    pos = flat.ref(table, index)
    if not pos:
        return np.empty((0, 2), np.int64)
    count = flat.read(_U32, pos)
    if pos + 4 + count * _STRUCT_BYTES > flat.size:
        raise RecordError("decode_error", "Arrow IPC message metadata is truncated")
    return np.frombuffer(flat.data, "<i8", 2 * count, pos + 4).reshape(count, 2)


def read_flat(value: bytes | memoryview, expected: pa.Schema, max_rows: int,
              max_body_bytes: int) -> FlatBatch | None:
    """The record's one uncompressed batch, when its schema is exactly ``expected``, it has
    1..``max_rows`` rows, no nulls and a body of at most ``max_body_bytes``; else None
    (use :func:`~streambind.stream.ipc.read_ipc`). See the module docstring."""
    layout = _layout(expected)
    if layout is None:
        return None
    data = memoryview(value).cast("B")
    try:
        return _read(data, expected, layout, max_rows, max_body_bytes)
    except RecordError:
        return None  # malformed: the general reader finds and reports it


# A column's plan: (name, numpy dtype or None, values start in the body, values length,
# offsets start (binary), offsets length, is text). Derived from the batch metadata alone.
_Plan = tuple[tuple[str, "np.dtype | None", int, int, int, int, bool], ...]
# (expected schema id, message metadata) -> (kind, body length, rows, plan or None). The
# metadata of one producer's batches repeats (same rows, same sizes), so it is parsed once.
_MESSAGES: dict[tuple[int, bytes], tuple[int, int, int, _Plan | None]] = {}
_MESSAGE_CACHE_MAX = 4096


def _message(meta: bytes, framed: memoryview, expected: pa.Schema,
             layout: _Layout) -> tuple[int, int, int, _Plan | None]:
    """(kind, body length, rows, plan) of the message with metadata ``meta``; ``framed``:
    the message from its first byte (its body may be cut short: then it is not cached)."""
    key = (id(expected), meta)
    hit = _MESSAGES.get(key)
    if hit is None:
        flat = _Flat(meta)
        message = flat.root()
        kind = flat.scalar(message, 1, _U8)
        body_len = flat.scalar(message, 3, _I64)
        if body_len < 0 or len(framed) < body_len:
            return kind, -1, 0, None
        rows, plan = 0, None
        if kind == _HEADER_RECORD_BATCH and flat.scalar(message, 0, _I16) in _VERSIONS:
            try:  # Arrow's own checks of the metadata (flatbuffer verifier, version), once
                pa.ipc.read_message(pa.py_buffer(framed))
            except (pa.ArrowException, ValueError, OSError, TypeError):
                return kind, body_len, 0, None  # not cached: the general reader reports it
            rows, plan = _plan(flat, flat.ref(message, 2), body_len, layout)
        hit = (kind, body_len, rows, plan)
        if len(_MESSAGES) >= _MESSAGE_CACHE_MAX:
            _MESSAGES.clear()
        _MESSAGES[key] = hit
    return hit


def _plan(flat: _Flat, batch: int, body_len: int, layout: _Layout) -> tuple[int, _Plan | None]:
    """Rows and column plan of a record batch message; plan None: not for the fast path."""
    if not batch or flat.ref(batch, 3) or flat.field(batch, 4):
        return 0, None  # compressed, or variadic buffers (view types): the general reader
    rows = flat.scalar(batch, 0, _I64)
    nodes = _structs(flat, batch, 1)  # (fields, 2): length, null_count
    buffers = _structs(flat, batch, 2)  # (buffers, 2): offset, length
    if rows < 1 or len(nodes) != len(layout) or len(buffers) != sum(
            2 if d is not None else 3 for _, d, _ in layout):
        return rows, None
    if (nodes[:, 0] != rows).any() or nodes[:, 1].any():
        return rows, None  # nulls, or a column of another length
    starts, lengths = buffers[:, 0], buffers[:, 1]
    if ((starts < 0).any() or (lengths < 0).any() or (starts + lengths > body_len).any()
            or (starts % 8).any()):  # Arrow requires 8-byte aligned buffers
        return rows, None
    starts_l, lengths_l = starts.tolist(), lengths.tolist()
    plan = []
    b = 1  # buffer 0 of each field: the validity bitmap (absent or all valid: no nulls)
    for name, dtype, text in layout:
        if dtype is not None:
            if lengths_l[b] < rows * dtype.itemsize:
                return rows, None
            plan.append((name, dtype, starts_l[b], lengths_l[b], -1, 0, False))
            b += 2
            continue
        if lengths_l[b] < (rows + 1) * 4:
            return rows, None
        plan.append((name, None, starts_l[b + 1], lengths_l[b + 1], starts_l[b], lengths_l[b],
                     text))
        b += 3
    return rows, tuple(plan)


# The framing and both metadata of the common record, byte for byte: (expected schema id,
# the record up to its batch body) -> (body length, rows, plan). A producer's records repeat
# them (same schema, same sizes), so such a record skips the message loop entirely.
_FRAMES: dict[tuple[int, bytes], tuple[int, int, _Plan]] = {}
_MARKED_LENGTH = struct.Struct("<ii")  # continuation marker (-1), metadata length
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _batch_start(data: memoryview) -> int:
    """Where the body of the second message starts when the record is framed as a schema
    message without body then a batch message, both with continuation markers; else -1."""
    size = len(data)
    if size < 16:
        return -1
    mark, length = _MARKED_LENGTH.unpack_from(data, 0)
    second = 8 + length
    if mark != -1 or length <= 0 or second + 8 > size:
        return -1
    mark, length = _MARKED_LENGTH.unpack_from(data, second)
    body = second + 8 + length
    return body if mark == -1 and 0 < length and body <= size else -1


def _known(data: memoryview, expected: pa.Schema, max_rows: int,
           max_body_bytes: int) -> tuple[int, int, _Plan] | None:
    """(body start, rows, plan) of a record whose framing and metadata were read before and
    that ends with its body or an end-of-stream marker; None: read it message by message."""
    body = _batch_start(data)
    if body < 0:
        return None
    hit = _FRAMES.get((id(expected), bytes(data[:body])))
    if hit is None:
        return None
    body_len, rows, plan = hit
    rest = len(data) - body - body_len
    if rows > max_rows or body_len > max_body_bytes or not (
            rest == 0 or (rest == 8 and data[-8:] == _END_OF_STREAM)):
        return None  # the message loop gives the outcome
    return body, rows, plan


def _remember(data: memoryview, expected: pa.Schema, body: int, body_len: int, rows: int,
              plan: _Plan) -> None:
    if _batch_start(data) != body:
        return  # framed otherwise (e.g. without continuation markers): not remembered
    if len(_FRAMES) >= _MESSAGE_CACHE_MAX:
        _FRAMES.clear()
    _FRAMES[(id(expected), bytes(data[:body]))] = (body_len, rows, plan)


def _read(data: memoryview, expected: pa.Schema, layout: _Layout,
          max_rows: int, max_body_bytes: int) -> FlatBatch | None:
    found = _known(data, expected, max_rows, max_body_bytes)
    if found is None:
        found = _read_messages(data, expected, layout, max_rows, max_body_bytes)
        if found is None:
            return None
    body, rows, plan = found
    cols: dict[str, tuple[np.ndarray, int, bool]] = {}
    for name, dtype, v_start, v_len, o_start, _o_len, text in plan:
        if dtype is not None:
            cols[name] = (np.frombuffer(data, dtype, rows, body + v_start), -1, False)
            continue
        offsets = np.frombuffer(data, "<i4", rows + 1, body + o_start)
        if offsets[0] < 0 or offsets[-1] > v_len or (
                rows > 1 and (offsets[1:] < offsets[:-1]).any()):
            return None
        cols[name] = (offsets, body + v_start, text)
    return FlatBatch(rows, data, cols)


def _read_messages(data: memoryview, expected: pa.Schema, layout: _Layout,
                   max_rows: int, max_body_bytes: int) -> tuple[int, int, _Plan] | None:
    """(body start, rows, plan) of the record's one batch, read message by message."""
    size = len(data)
    pos = 0
    schema_ok = False
    found: tuple[int, int, _Plan] | None = None  # body start, rows, plan
    found_len = 0
    count = 0
    while pos + 4 <= size:
        start = pos
        (length,) = _I32.unpack_from(data, pos)
        pos += 4
        if length == -1:  # continuation marker, then the metadata length
            if pos + 4 > size:
                return None
            (length,) = _I32.unpack_from(data, pos)
            pos += 4
        if length == 0:
            break  # end of stream
        if length < 0 or pos + length > size or count == 2:
            return None
        meta = bytes(data[pos:pos + length])
        body = pos + length
        kind, body_len, rows, plan = _message(meta, data[start:], expected, layout)
        if body_len < 0 or body + body_len > size:
            return None
        pos = body + body_len
        count += 1
        if count == 1:
            if kind != _HEADER_SCHEMA or not _is_expected(meta, data[start:pos], expected):
                return None
            schema_ok = True
        elif (kind != _HEADER_RECORD_BATCH or plan is None or body_len > max_body_bytes
              or rows > max_rows):
            return None
        else:
            found, found_len = (body, rows, plan), body_len
    if not schema_ok or found is None:
        return None
    _remember(data, expected, found[0], found_len, found[1], found[2])
    return found
