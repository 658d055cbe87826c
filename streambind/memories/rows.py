"""Pure decoding of the topics ``remember`` reads into store rows.

``streambind.embeddings`` values (Arrow IPC) become memory rows (:func:`store.row_schema`);
``streambind.events`` values (JSON) become label rows (:data:`store.LABEL_SCHEMA`). Fused
rows are made here too: the stream fuses a device's overlapping windows of different
modalities into a ``fused`` event but publishes no fused embedding, so the store rebuilds the
fused vector the same way (:class:`FusionState`, ImageBind's normalized sum).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streambind.errors import StreambindError
from streambind.memories.store import LABEL_SCHEMA, label_key, row_schema, unit
from streambind.stream.ids import window_id

MAX_RECORD_BYTES = 16 * 1024 * 1024
FUSED = "fused"
FUSION_HORIZON_NS = 30 * 1_000_000_000


class RecordError(StreambindError):
    """A record on an input topic cannot be decoded; ``reason`` is its DLQ code."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Memory:
    """One decoded embedded window, before it becomes a row."""

    window_id: str
    device_id: str
    modality: str
    window_start_ns: int
    window_end_ns: int
    model: str
    vector: np.ndarray  # (D,) unit
    source_topic: str | None = None
    source_partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    thumbnail: bytes | None = None


def decode_embeddings(value: bytes) -> list[Memory]:
    """The windows of one ``streambind.embeddings`` value (Arrow IPC stream)."""
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError(f"embeddings record of {len(value)} bytes", "too_large")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(value)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordError(f"not an Arrow IPC stream: {exc}", "bad_schema") from exc
    need = ("device_id", "modality", "window_start_ns", "window_end_ns", "embedding", "model")
    missing = [n for n in need if n not in table.column_names]
    if missing:
        raise RecordError(f"embeddings record lacks {missing}", "bad_schema")
    if not pa.types.is_fixed_size_list(table.schema.field("embedding").type):
        raise RecordError("embedding is not a fixed-size list", "bad_schema")
    cols = {n: table.column(n).to_pylist() for n in table.column_names if n != "embedding"}
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    vectors = vectors.reshape(table.num_rows, -1)  # (N, D)
    if not np.isfinite(vectors).all():
        raise RecordError("embedding holds NaN or infinity", "non_finite")
    out = []
    for i in range(table.num_rows):
        def get(name: str, i: int = i) -> object:
            return cols[name][i] if name in cols else None

        ident = window_id(get("device_id"), get("modality"), get("window_start_ns"),
                          get("window_end_ns"), get("model"))
        if get("window_id") not in (None, ident):
            raise RecordError("window_id does not match the window's fields", "bad_window_id")
        out.append(Memory(ident, get("device_id"), get("modality"), get("window_start_ns"),
                          get("window_end_ns"), get("model"), unit(vectors[i]),
                          get("source_topic"), get("source_partition"), get("first_offset"),
                          get("last_offset"), get("thumbnail")))
    return out


def decode_event(value: bytes) -> tuple[str, dict[str, object]] | None:
    """(model, label row) of one ``streambind.events`` value; None when it has no labels."""
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError(f"event of {len(value)} bytes", "too_large")
    try:
        event = json.loads(value)
        labels = sorted({str(item["label"]) for item in event.get("labels") or []})
        model = str(event["model"])
        ident = window_id(str(event["device_id"]), str(event["modality"]),
                          int(event["window_start_ns"]), int(event["window_end_ns"]), model)
        label_set = str(event.get("label_set") or "")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"malformed event: {exc}", "bad_schema") from exc
    row = {"key": label_key(ident, label_set), "window_id": ident, "label_set": label_set,
           "labels": labels, "window_end_ns": int(event["window_end_ns"]),
           "device_id": str(event["device_id"])}
    return model, row


class FusionState:
    """Recent windows per device, to build the ``fused`` memory of each new window.

    Same rule as the stream's fused events: the new window plus, per other modality, the
    already-seen window overlapping it most (ties: the later one), summed as unit vectors.
    """

    def __init__(self, horizon_ns: int = FUSION_HORIZON_NS) -> None:
        self.horizon_ns = horizon_ns
        self._recent: dict[tuple[str, str], deque[Memory]] = defaultdict(deque)

    def add(self, memory: Memory) -> Memory | None:
        """Remember ``memory``; return its fused memory when it overlaps other modalities."""
        if memory.modality == FUSED:
            return None
        recent = self._recent[(memory.model, memory.device_id)]
        best: dict[str, tuple[int, int, Memory]] = {}
        for other in recent:
            if other.modality == memory.modality:
                continue
            overlap = (min(other.window_end_ns, memory.window_end_ns)
                       - max(other.window_start_ns, memory.window_start_ns))
            rank = (overlap, other.window_start_ns)
            if overlap > 0 and (other.modality not in best or rank > best[other.modality][:2]):
                best[other.modality] = (*rank, other)
        recent.append(memory)
        newest = max(m.window_end_ns for m in recent)
        while recent and recent[0].window_end_ns < newest - self.horizon_ns:
            recent.popleft()
        if not best:
            return None
        vectors = [memory.vector, *(best[m][2].vector for m in sorted(best))]
        fused = unit(unit(np.stack(vectors)).sum(axis=0))
        thumb = memory.thumbnail or next(
            (best[m][2].thumbnail for m in sorted(best) if best[m][2].thumbnail), None)
        return Memory(
            window_id(memory.device_id, FUSED, memory.window_start_ns, memory.window_end_ns,
                      memory.model),
            memory.device_id, FUSED, memory.window_start_ns, memory.window_end_ns,
            memory.model, fused, thumbnail=thumb)


def memory_table(memories: Sequence[Memory], stored_at_ns: int) -> pa.Table:
    """Rows for the store; the last memory of a window id wins (a batch holds no duplicates)."""
    latest: dict[str, Memory] = {}
    for memory in memories:
        latest[memory.window_id] = memory
    items = list(latest.values())
    dim = int(items[0].vector.shape[-1])
    flat = np.concatenate([m.vector.astype(np.float32).reshape(dim) for m in items])
    columns = {
        "window_id": [m.window_id for m in items],
        "device_id": [m.device_id for m in items],
        "modality": [m.modality for m in items],
        "window_start_ns": [m.window_start_ns for m in items],
        "window_end_ns": [m.window_end_ns for m in items],
        "model": [m.model for m in items],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
        "source_topic": [m.source_topic for m in items],
        "source_partition": [m.source_partition for m in items],
        "first_offset": [m.first_offset for m in items],
        "last_offset": [m.last_offset for m in items],
        "thumbnail": [m.thumbnail for m in items],
        "stored_at_ns": [stored_at_ns] * len(items),
    }
    return pa.table(columns, schema=row_schema(dim))


def label_table(rows: Sequence[dict[str, object]]) -> pa.Table:
    """Label rows for the store; the last row of a key wins."""
    latest = {row["key"]: row for row in rows}
    items = list(latest.values())
    return pa.table({name: [r[name] for r in items] for name in LABEL_SCHEMA.names},
                    schema=LABEL_SCHEMA)
