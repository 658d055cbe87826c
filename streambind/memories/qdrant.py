"""Qdrant backend of the memories store: for more than one machine (shards, replicas).

URIs: ``qdrant://host:6333`` (``qdrants://`` for TLS; an API key comes from the
``QDRANT_API_KEY`` environment variable, never from the URI or a log), and qdrant-client's
local mode ``qdrant+local://PATH`` / ``qdrant+local://:memory:`` (tests, small stores).

One collection per model (cosine distance); point ids are UUIDs derived from ``window_id``,
so an upsert replaces a replayed window. Payload indexes on device, modality and window
bounds make filtered HNSW search exact enough; a filter passing few rows is searched
exactly (``SearchParams(exact=True)``) so the true top-k comes back. Labels live in a second
collection per model with a 1-d placeholder vector.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from streambind.memories.store import (
    NO_FILTER,
    Filter,
    Hit,
    SearchPlan,
    StoreError,
    row_schema,
    table_name,
    unit,
)

EXACT_MAX_ROWS = 20_000
_UPSERT_CHUNK = 256


def point_id(key: str) -> str:
    """A UUID string from a sha256 hex key (its first 128 bits); other strings are hashed."""
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        key = hashlib.sha256(key.encode()).hexdigest()
    return str(uuid.UUID(hex=key[:32]))


def qdrant_filter(where: Filter) -> Any:
    """The Qdrant filter of a :class:`Filter`, or None."""
    from qdrant_client import models

    must: list[Any] = []
    for key, values in (("device_id", where.devices), ("modality", where.modalities),
                        ("window_id", where.window_ids)):
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(values))))
    if where.since_ns is not None:
        must.append(models.FieldCondition(key="window_end_ns",
                                          range=models.Range(gt=int(where.since_ns))))
    if where.until_ns is not None:
        must.append(models.FieldCondition(key="window_start_ns",
                                          range=models.Range(lt=int(where.until_ns))))
    return models.Filter(must=must) if must else None


class QdrantStore:
    """The Qdrant store (see the module docstring)."""

    def __init__(self, uri: str, exact_max_rows: int = EXACT_MAX_ROWS) -> None:
        from qdrant_client import QdrantClient

        self.uri = uri
        self.exact_max_rows = exact_max_rows
        scheme, rest = uri.split("://", 1)
        self._local = scheme == "qdrant+local"
        try:
            if scheme == "qdrant+local":
                self.client = QdrantClient(location=":memory:") if rest == ":memory:" \
                    else QdrantClient(path=rest)
            else:
                host, _, port = rest.rstrip("/").partition(":")
                self.client = QdrantClient(host=host, port=int(port or 6333),
                                           https=scheme == "qdrants",
                                           api_key=os.environ.get("QDRANT_API_KEY"))
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"cannot open Qdrant store {scheme}://...: {exc}") from exc
        self._known: set[str] = set()

    def _ensure(self, name: str, dim: int, indexes: Sequence[tuple[str, str]]) -> None:
        from qdrant_client import models

        if name in self._known:
            return
        if not self.client.collection_exists(name):
            self.client.create_collection(name, vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.COSINE))
            for field, kind in indexes if not self._local else ():  # local mode ignores them
                self.client.create_payload_index(name, field, field_schema=kind)
        self._known.add(name)

    def _exists(self, name: str) -> bool:
        return name in self._known or self.client.collection_exists(name)

    def models(self) -> list[str]:
        """Models with a memories collection."""
        out = []
        for c in self.client.get_collections().collections:
            if c.name.startswith("mem_"):
                points, _ = self.client.scroll(c.name, limit=1, with_payload=["model"])
                if points:
                    out.append(points[0].payload["model"])
        return sorted(out)

    def upsert(self, model: str, rows: pa.Table) -> int:
        """Upsert rows by window id (UUID point ids), waiting until applied."""
        from qdrant_client import models

        if rows.num_rows == 0:
            return 0
        dim = rows.schema.field("vector").type.list_size
        name = table_name(model)
        self._ensure(name, dim, [("device_id", "keyword"), ("modality", "keyword"),
                                 ("window_id", "keyword"), ("window_start_ns", "integer"),
                                 ("window_end_ns", "integer")])
        vectors = np.asarray(rows.column("vector").combine_chunks().flatten(), np.float32)
        vectors = vectors.reshape(rows.num_rows, dim)  # (N, D)
        payload_cols = {n: rows.column(n).to_pylist() for n in rows.column_names if n != "vector"}
        points = []
        for i in range(rows.num_rows):
            payload = {n: v[i] for n, v in payload_cols.items()}
            if payload.get("thumbnail") is not None:
                payload["thumbnail"] = base64.b64encode(payload["thumbnail"]).decode()
            points.append(models.PointStruct(id=point_id(payload["window_id"]),
                                             vector=vectors[i].tolist(), payload=payload))
        for start in range(0, len(points), _UPSERT_CHUNK):
            self.client.upsert(name, points[start:start + _UPSERT_CHUNK], wait=True)
        return rows.num_rows

    def upsert_labels(self, model: str, rows: pa.Table) -> int:
        """Upsert label rows by key."""
        from qdrant_client import models

        if rows.num_rows == 0:
            return 0
        name = "lbl_" + table_name(model)
        self._ensure(name, 1, [("window_id", "keyword"), ("labels", "keyword"),
                               ("device_id", "keyword"), ("window_end_ns", "integer")])
        points = [models.PointStruct(id=point_id(r["key"]), vector=[1.0], payload=r)
                  for r in rows.to_pylist()]
        self.client.upsert(name, points, wait=True)
        return rows.num_rows

    def delete(self, model: str, *, device_id: str | None = None,
               ended_before_ns: int | None = None) -> int:
        """Delete a device's rows and/or rows that ended before a time."""
        from qdrant_client import models

        if device_id is None and ended_before_ns is None:
            raise StoreError("delete needs a device or a time")
        must: list[Any] = []
        if device_id is not None:
            must.append(models.FieldCondition(key="device_id",
                                              match=models.MatchValue(value=device_id)))
        if ended_before_ns is not None:
            must.append(models.FieldCondition(key="window_end_ns",
                                              range=models.Range(lt=int(ended_before_ns))))
        removed = 0
        for name in (table_name(model), "lbl_" + table_name(model)):
            if not self._exists(name):
                continue
            flt = models.Filter(must=must)
            count = self.client.count(name, count_filter=flt, exact=True).count
            self.client.delete(name, points_selector=models.FilterSelector(filter=flt), wait=True)
            if name.startswith("mem_"):
                removed = count
        return removed

    def optimize(self, model: str) -> None:
        """Qdrant's optimizers run server-side (segment merging, HNSW build); nothing to do."""

    def count(self, model: str) -> int:
        """Points stored for ``model``."""
        name = table_name(model)
        return self.client.count(name, exact=True).count if self._exists(name) else 0

    def search(
        self, model: str, vector: np.ndarray, k: int, where: Filter = NO_FILTER,
        *, exact: bool | None = None,
    ) -> tuple[list[Hit], SearchPlan]:
        """Top-k by cosine similarity; a selective filter is searched exactly."""
        from qdrant_client import models

        name = table_name(model)
        if not self._exists(name):
            return [], SearchPlan(True, "no collection for this model")
        flt = qdrant_filter(where)
        if self._local:
            plan = SearchPlan(True, "local mode is always exact")
        elif exact is not None:
            plan = SearchPlan(exact, "requested")
        elif flt is None:
            plan = SearchPlan(False, "indexed")
        else:
            candidates = self.client.count(name, count_filter=flt, exact=True).count
            plan = SearchPlan(candidates <= self.exact_max_rows,
                              "selective filter" if candidates <= self.exact_max_rows
                              else "indexed with filter", candidates)
        result = self.client.query_points(
            name, query=unit(vector).tolist(), query_filter=flt, limit=k, with_payload=True,
            search_params=None if self._local else models.SearchParams(exact=plan.exact))
        hits = []
        for point in result.points:
            p = point.payload
            thumb = p.get("thumbnail")
            hits.append(Hit(
                window_id=p["window_id"], device_id=p["device_id"], modality=p["modality"],
                window_start_ns=p["window_start_ns"], window_end_ns=p["window_end_ns"],
                score=float(point.score), model=p.get("model", model),
                source_topic=p.get("source_topic"), source_partition=p.get("source_partition"),
                first_offset=p.get("first_offset"), last_offset=p.get("last_offset"),
                thumbnail=base64.b64decode(thumb) if thumb else None))
        return hits, plan

    def get(self, model: str, window_ids: Sequence[str]) -> pa.Table:
        """Rows (with vectors) of these ids."""
        name = table_name(model)
        if not window_ids or not self._exists(name):
            return pa.table({})
        points = self.client.retrieve(name, [point_id(w) for w in window_ids],
                                      with_payload=True, with_vectors=True)
        if not points:
            return pa.table({})
        dim = len(points[0].vector)
        rows = []
        for point in points:
            row = dict(point.payload)
            row["vector"] = point.vector
            if row.get("thumbnail"):
                row["thumbnail"] = base64.b64decode(row["thumbnail"])
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=row_schema(dim))

    def _label_points(self, model: str, flt: Any) -> list[dict[str, Any]]:
        name = "lbl_" + table_name(model)
        if not self._exists(name):
            return []
        out, offset = [], None
        while True:
            points, offset = self.client.scroll(name, scroll_filter=flt, limit=1024,
                                                offset=offset, with_payload=True)
            out.extend(p.payload for p in points)
            if offset is None:
                return out

    def labels_of(self, model: str, window_ids: Sequence[str]) -> dict[str, list[str]]:
        """window_id -> sorted union of labels over label sets."""
        if not window_ids:
            return {}
        out: dict[str, set[str]] = {}
        for row in self._label_points(model, qdrant_filter(Filter(window_ids=tuple(window_ids)))):
            out.setdefault(row["window_id"], set()).update(row["labels"])
        return {w: sorted(v) for w, v in out.items()}

    def windows_with_label(self, model: str, label: str) -> list[str]:
        """Window ids with ``label`` under any label set."""
        from qdrant_client import models

        flt = models.Filter(must=[models.FieldCondition(
            key="labels", match=models.MatchValue(value=label))])
        return sorted({row["window_id"] for row in self._label_points(model, flt)})

