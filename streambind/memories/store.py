"""The memories store: one row per embedded window, keyed by ``window_id``, one table per model.

:class:`Store` is the interface both backends implement; :func:`open_store` picks one by URI:

- a path (``./streambind-memories``) or an object-store URI (``s3://bucket/memories``,
  ``gs://``, ``az://``, ``file://``): LanceDB, embedded (:mod:`.lance`);
- ``qdrant://host:6333`` (``qdrants://`` for TLS): a Qdrant server or cluster;
  ``qdrant+local://PATH`` or ``qdrant+local://:memory:``: qdrant-client's local mode
  (:mod:`.qdrant`).

Rows are Arrow tables with :func:`row_schema`; writes are upserts by ``window_id`` so an
at-least-once replay never duplicates a memory. Labels (from ``streambind.events``) live
beside the rows, keyed by (window_id, label_set), because an event may arrive before or after
its embedding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa

from streambind.errors import StreambindError


class StoreError(StreambindError):
    """The memories store cannot be opened, read or written."""


ROW_FIELDS = (
    "window_id", "device_id", "modality", "window_start_ns", "window_end_ns", "model",
    "vector", "source_topic", "source_partition", "first_offset", "last_offset", "thumbnail",
    "stored_at_ns",
)


def row_schema(dim: int) -> pa.Schema:
    """The Arrow schema of memory rows for embedding width ``dim`` (``vector`` is unit norm)."""
    return pa.schema([
        pa.field("window_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("window_start_ns", pa.int64(), nullable=False),
        pa.field("window_end_ns", pa.int64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("first_offset", pa.int64()),
        pa.field("last_offset", pa.int64()),
        pa.field("thumbnail", pa.binary()),
        pa.field("stored_at_ns", pa.int64(), nullable=False),
    ])


LABEL_SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),  # sha256(window_id, label_set)
    pa.field("window_id", pa.string(), nullable=False),
    pa.field("label_set", pa.string(), nullable=False),
    pa.field("labels", pa.list_(pa.string()), nullable=False),
    pa.field("window_end_ns", pa.int64(), nullable=False),
    pa.field("device_id", pa.string(), nullable=False),
])


def label_key(window_id: str, label_set: str) -> str:
    """The key of one label row: a window's labels under one label set."""
    return hashlib.sha256(f"{window_id}\x00{label_set}".encode()).hexdigest()


def table_name(model: str) -> str:
    """The table (collection) of one model: a readable slug plus a hash of the exact name.

    One table per model, so embedding spaces never mix; the hash keeps two names that slug
    alike apart.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:40] or "model"
    return f"mem_{slug}_{hashlib.sha256(model.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Filter:
    """Row filters; every field is optional and they combine with AND (lists with OR)."""

    devices: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    since_ns: int | None = None  # window_end_ns > since_ns
    until_ns: int | None = None  # window_start_ns < until_ns
    window_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing is filtered."""
        return not (self.devices or self.modalities or self.window_ids
                    or self.since_ns is not None or self.until_ns is not None)


NO_FILTER = Filter()


@dataclass(frozen=True)
class Hit:
    """One stored window found by a vector query; ``score`` is the cosine similarity."""

    window_id: str
    device_id: str
    modality: str
    window_start_ns: int
    window_end_ns: int
    score: float
    model: str = ""
    source_topic: str | None = None
    source_partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    thumbnail: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SearchPlan:
    """How a query ran: ``exact`` (flat scan) or indexed, and why."""

    exact: bool
    reason: str
    candidates: int | None = None


class Store(Protocol):
    """What ``remember`` writes to and ``search`` reads from (one table per model)."""

    uri: str

    def upsert(self, model: str, rows: pa.Table) -> int:
        """Insert or replace rows (:func:`row_schema`) by ``window_id``; durable on return."""
        ...

    def upsert_labels(self, model: str, rows: pa.Table) -> int:
        """Insert or replace label rows (:data:`LABEL_SCHEMA`) by ``key``; durable on return."""
        ...

    def search(
        self, model: str, vector: np.ndarray, k: int, where: Filter = NO_FILTER,
        *, exact: bool | None = None,
    ) -> tuple[list[Hit], SearchPlan]:
        """The k rows most similar to ``vector`` (D,) among those passing ``where``.

        ``exact=None`` lets the store choose; a selective filter always runs exactly, so the
        true top-k comes back.
        """
        ...

    def get(self, model: str, window_ids: Sequence[str]) -> pa.Table:
        """The stored rows (with vectors) of these window ids; missing ids are absent."""
        ...

    def labels_of(self, model: str, window_ids: Sequence[str]) -> dict[str, list[str]]:
        """window_id -> sorted labels (all label sets) for those that have any."""
        ...

    def windows_with_label(self, model: str, label: str) -> list[str]:
        """Window ids carrying ``label`` under any label set."""
        ...

    def count(self, model: str) -> int:
        """Rows stored for ``model``."""
        ...

    def models(self) -> list[str]:
        """Models with a table in this store."""
        ...

    def delete(self, model: str, *, device_id: str | None = None,
               ended_before_ns: int | None = None) -> int:
        """Delete a device's rows or rows whose window ended before a time; returns count."""
        ...

    def optimize(self, model: str) -> None:
        """Compaction and index refresh (off the write path: a scheduler calls it)."""
        ...


def open_store(uri: str, **options: object) -> Store:
    """Open the store a URI names (see the module docstring)."""
    if not uri:
        raise StoreError("empty store URI")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("qdrant", "qdrants", "qdrant+local"):
        from streambind.memories.qdrant import QdrantStore

        return QdrantStore(uri, **options)  # type: ignore[arg-type]
    from streambind.memories.lance import LanceStore

    return LanceStore(uri, **options)  # type: ignore[arg-type]


def unit(vectors: np.ndarray) -> np.ndarray:
    """L2-normalized float32 rows (B, D) or vector (D,); zero vectors stay zero."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def hits_from_table(table: pa.Table, scores: Sequence[float]) -> list[Hit]:
    """Hits from rows of :func:`row_schema` (any subset of columns) and their scores."""
    cols = {name: table.column(name).to_pylist() for name in table.column_names
            if name in Hit.__dataclass_fields__}
    return [Hit(**{name: values[i] for name, values in cols.items()}, score=float(scores[i]))
            for i in range(table.num_rows)]
