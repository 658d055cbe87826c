"""LanceDB backend of the memories store: embedded, on a local directory or object storage.

Writes are upserts by ``window_id`` in one commit per batch. A window id hashes the window's
bounds, so a stored row with the same id has the same ``window_end_ns``: the upsert reads the
ids stored in the batch's end-time range (a BTree range, cheap) and, when none of the batch's
ids is there (the normal, live case), appends the batch as a plain ``add``; when some are (a
replay), it runs ``merge_insert`` on ``window_id``, which replaces them. ``merge_insert``
alone joins against the whole key column on every call and was about 10x slower than an
append at 100k rows. Two writers racing on the same new window (a rebalance overlap) can
both append it; maintenance removes such duplicates and search never returns one twice.

The vector index (IVF_SQ over cosine distance, with re-ranking of the
candidates on the full vectors) is built and refreshed by :meth:`LanceStore.optimize`, which
a scheduler calls off the write path; rows appended since the last refresh are still found
(LanceDB scans the unindexed tail exactly), so freshness does not wait for the index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import Bitmap, BTree, IvfHnswSq, IvfPq, IvfSq

from streambind.memories.store import (
    LABEL_SCHEMA,
    NO_FILTER,
    Filter,
    Hit,
    SearchPlan,
    StoreError,
    hits_from_table,
    row_schema,
    table_name,
    unit,
)

logger = logging.getLogger(__name__)

_HIT_COLUMNS = ["window_id", "device_id", "modality", "window_start_ns", "window_end_ns",
                "model", "source_topic", "source_partition", "first_offset", "last_offset",
                "thumbnail", "_distance"]


@dataclass(frozen=True)
class LanceOptions:
    """Index and query tuning; the defaults meet the targets in the README at 100k rows
    (``streambind bench memories``)."""

    index_type: str = "IVF_SQ"  # 8-bit scalar quantization; candidates re-ranked exactly
    min_index_rows: int = 10_000  # below this a flat scan is fast enough
    # A filter passing at most this many rows runs as an exact scan. Lance's flat scan costs
    # about 15 us a row (D = 1024) and the prefiltered IVF probe kept recall@10 at 1.0 down
    # to 1% selectivity in `streambind bench memories`, so exact is kept for tiny sets.
    exact_max_rows: int = 2_000
    # Rows per IVF partition. Given as a target size, not a count: LanceDB's optimize()
    # re-partitions to its target size as the table grows, and an index built with a
    # partition count was collapsed to a single partition by the first optimize() (every
    # query then scanned every row's code; found with `streambind bench memories`).
    target_partition_size: int = 1024
    nprobes: int = 24
    filtered_nprobes_max_factor: float = 8.0  # a prefiltered probe: up to 8x the partitions
    refine_factor: int = 10
    sub_vector_dim: int = 16  # PQ: D / 16 sub-vectors
    # How stale a reader's view of the table may be: another process's commit becomes
    # visible to this one within this many seconds (None: never re-checked; 0: every read).
    read_consistency_s: float | None = 1.0
    append_check_max_rows: int = 200_000  # a wider end-time range goes to merge_insert
    cleanup_older_than_s: float = 600.0  # maintenance drops table versions older than this
    storage_options: dict[str, str] | None = None


DEDUPE_MARGIN_S = 600.0  # racing copies are stored within this of each other


def sql_quote(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def filter_sql(where: Filter) -> str | None:
    """The SQL predicate of a filter, or None when it filters nothing."""
    parts = []
    if where.devices:
        parts.append(f"device_id IN ({', '.join(sql_quote(d) for d in where.devices)})")
    if where.modalities:
        parts.append(f"modality IN ({', '.join(sql_quote(m) for m in where.modalities)})")
    if where.window_ids:
        parts.append(f"window_id IN ({', '.join(sql_quote(w) for w in where.window_ids)})")
    if where.since_ns is not None:
        parts.append(f"window_end_ns > {int(where.since_ns)}")
    if where.until_ns is not None:
        parts.append(f"window_start_ns < {int(where.until_ns)}")
    return " AND ".join(parts) if parts else None


class LanceStore:
    """The embedded default store (see the module docstring)."""

    def __init__(self, uri: str, options: LanceOptions | None = None) -> None:
        import lancedb

        self.uri = uri
        self.options = options or LanceOptions()
        try:
            consistency = self.options.read_consistency_s
            self._db = lancedb.connect(
                uri, storage_options=self.options.storage_options,
                read_consistency_interval=None if consistency is None
                else timedelta(seconds=consistency))
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"cannot open LanceDB store {uri!r}: {exc}") from exc
        self._tables: dict[str, Any] = {}
        self._deduped_since_ns: dict[str, int] = {}  # table -> rows older were checked

    # -- tables ---------------------------------------------------------------------------
    def _names(self) -> list[str]:
        result = self._db.list_tables()
        return list(getattr(result, "tables", result))

    def _table(self, name: str, schema: pa.Schema | None = None) -> Any:
        table = self._tables.get(name)
        if table is not None:
            return table
        if name in self._names():
            table = self._db.open_table(name)
        elif schema is not None:
            table = self._db.create_table(name, schema=schema, exist_ok=True)
        else:
            return None
        self._tables[name] = table
        return table

    def models(self) -> list[str]:
        """Models with a memories table (read from each table's first row)."""
        out = []
        for name in self._names():
            if name.startswith("mem_"):
                head = self._db.open_table(name).head(1)
                if head.num_rows:
                    out.append(head.column("model")[0].as_py())
        return sorted(out)

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, model: str, rows: pa.Table) -> int:
        """Upsert rows by ``window_id`` in one commit (see the module docstring)."""
        if rows.num_rows == 0:
            return 0
        dim = rows.schema.field("vector").type.list_size
        table = self._table(table_name(model), row_schema(dim))
        try:
            if self._any_stored(table, rows):
                (table.merge_insert("window_id").when_matched_update_all()
                 .when_not_matched_insert_all().execute(rows))
            else:
                table.add(rows)
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"upsert of {rows.num_rows} rows failed: {exc}") from exc
        return rows.num_rows

    def _any_stored(self, table: Any, rows: pa.Table) -> bool:
        """Whether any of ``rows``' window ids is stored (looked up by end-time range)."""
        ends = rows.column("window_end_ns")
        lo, hi = pc.min(ends).as_py(), pc.max(ends).as_py()
        sql = f"window_end_ns >= {int(lo)} AND window_end_ns <= {int(hi)}"
        limit = self.options.append_check_max_rows
        stored = table.search().where(sql).select(["window_id"]).limit(limit + 1).to_arrow()
        if stored.num_rows > limit:
            return True  # too wide to check cheaply: let merge_insert sort it out
        if stored.num_rows == 0:
            return False
        return bool(pc.any(pc.is_in(rows.column("window_id"),
                                    value_set=stored.column("window_id"))).as_py())

    def upsert_labels(self, model: str, rows: pa.Table) -> int:
        """Upsert label rows by ``key``."""
        if rows.num_rows == 0:
            return 0
        table = self._table("lbl_" + table_name(model), LABEL_SCHEMA)
        (table.merge_insert("key").when_matched_update_all()
         .when_not_matched_insert_all().execute(rows))
        return rows.num_rows

    def delete(self, model: str, *, device_id: str | None = None,
               ended_before_ns: int | None = None) -> int:
        """Delete a device's memories, or those whose window ended before a time."""
        if device_id is None and ended_before_ns is None:
            raise StoreError("delete needs a device or a time")
        parts = []
        if device_id is not None:
            parts.append(f"device_id = {sql_quote(device_id)}")
        if ended_before_ns is not None:
            parts.append(f"window_end_ns < {int(ended_before_ns)}")
        predicate = " AND ".join(parts)
        removed = 0
        for name in (table_name(model), "lbl_" + table_name(model)):
            table = self._table(name)
            if table is None:
                continue
            before = table.count_rows()
            table.delete(predicate)
            if name.startswith("mem_"):
                removed = before - table.count_rows()
        return removed

    def optimize(self, model: str) -> None:
        """Drop duplicate ids, build the scalar indexes and (once large enough) the vector
        index, then compact and merge new rows into the indexes; old versions are removed."""
        table = self._table(table_name(model))
        if table is None:
            return
        self._dedupe(table, table_name(model))
        rows = table.count_rows()
        indices = {tuple(i.columns) for i in table.list_indices()}
        for column, config in (("window_id", BTree()), ("window_end_ns", BTree()),
                               ("device_id", Bitmap()), ("modality", Bitmap())):
            if (column,) not in indices and rows:
                table.create_index(column, config=config)
        if ("vector",) not in indices and rows >= self.options.min_index_rows:
            dim = table.schema.field("vector").type.list_size
            started_s = time.perf_counter()
            table.create_index("vector", config=self._index_config(dim))
            logger.info("vector index built over %d rows (partitions of ~%d) in %.1f s",
                        rows, self.options.target_partition_size,
                        time.perf_counter() - started_s)
        # Compaction + merge of new rows into existing indices.
        table.optimize(cleanup_older_than=timedelta(seconds=self.options.cleanup_older_than_s))

    def _dedupe(self, table: Any, name: str) -> int:
        """Keep one row per window id (the latest ``stored_at_ns``); returns rows removed.

        Racing writers store both copies at about the same time, so after a first full
        pass only rows stored since the previous pass (less a margin for clock skew
        between writers) are compared: the pass stays cheap on a large table.
        """
        since = self._deduped_since_ns.get(name)
        self._deduped_since_ns[name] = time.time_ns() - int(DEDUPE_MARGIN_S * 1e9)
        query = table.search().select(["window_id"])
        if since is not None:
            query = query.where(f"stored_at_ns >= {since}")
        ids = query.limit(None).to_arrow()
        if ids.num_rows == 0:
            return 0
        counts = pc.value_counts(ids.column("window_id"))
        dups = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        if len(dups) == 0:
            return 0
        sql = filter_sql(Filter(window_ids=tuple(dups.to_pylist())))
        stored = table.search().where(sql).select(["window_id", "stored_at_ns"]).limit(
            None).to_arrow()
        latest: dict[str, int] = {}
        for wid, at in zip(stored.column("window_id").to_pylist(),
                           stored.column("stored_at_ns").to_pylist(), strict=True):
            latest[wid] = max(at, latest.get(wid, at))
        # One delete (one commit) of every older copy; copies written in the same
        # nanosecond stay (search shows a window id once anyway).
        predicate = " OR ".join(f"(window_id = {sql_quote(w)} AND stored_at_ns < {int(at)})"
                                for w, at in latest.items())
        before = table.count_rows()
        table.delete(predicate)
        removed = before - table.count_rows()
        logger.info("removed %d duplicate rows of %d window ids", removed, len(latest))
        return removed

    def _index_config(self, dim: int) -> Any:
        kind, size = self.options.index_type, self.options.target_partition_size
        if kind == "IVF_PQ":
            return IvfPq(distance_type="cosine", target_partition_size=size,
                         num_sub_vectors=max(1, dim // self.options.sub_vector_dim))
        if kind == "IVF_SQ":
            return IvfSq(distance_type="cosine", target_partition_size=size)
        if kind == "IVF_HNSW_SQ":
            return IvfHnswSq(distance_type="cosine", target_partition_size=16 * size)
        raise StoreError(f"unknown index type {kind!r}; use IVF_SQ, IVF_PQ or IVF_HNSW_SQ")

    # -- reads ----------------------------------------------------------------------------
    def count(self, model: str) -> int:
        """Rows stored for ``model``."""
        table = self._table(table_name(model))
        return 0 if table is None else table.count_rows()

    def _indexed(self, table: Any) -> bool:
        return any(tuple(i.columns) == ("vector",) for i in table.list_indices())

    def search(
        self, model: str, vector: np.ndarray, k: int, where: Filter = NO_FILTER,
        *, exact: bool | None = None,
    ) -> tuple[list[Hit], SearchPlan]:
        """Top-k by cosine similarity; selective filters and un-indexed tables run exactly."""
        table = self._table(table_name(model))
        if table is None:
            return [], SearchPlan(True, "no table for this model")
        sql = filter_sql(where)
        plan = self._plan(table, sql, exact)
        nprobes = self.options.nprobes
        if not plan.exact and plan.candidates:
            # A filter passing a fraction f of the rows leaves ~f of each probed partition:
            # probe more partitions the more selective it is (1/sqrt(f), capped).
            fraction = plan.candidates / max(1, table.count_rows())
            nprobes = int(round(nprobes * min(self.options.filtered_nprobes_max_factor,
                                              max(1.0, fraction ** -0.5))))
        hits = self._query(table, vector, k, sql, plan.exact, nprobes)
        if not plan.exact and len(hits) < k:
            # An ANN probe can miss rows a filter allows; never return fewer than exist.
            matching = table.count_rows(sql) if sql else table.count_rows()
            if matching > len(hits):
                hits = self._query(table, vector, k, sql, True)
                plan = SearchPlan(True, "indexed probe came back short", matching)
        return hits, plan

    def _plan(self, table: Any, sql: str | None, exact: bool | None) -> SearchPlan:
        if exact:
            return SearchPlan(True, "requested")
        if exact is not None:  # indexed on request: still count, to size the probe
            return SearchPlan(False, "requested", table.count_rows(sql) if sql else None)
        if not self._indexed(table):
            return SearchPlan(True, "no vector index yet")
        if sql is None:
            return SearchPlan(False, "indexed")
        candidates = table.count_rows(sql)
        if candidates <= self.options.exact_max_rows:
            return SearchPlan(True, "selective filter", candidates)
        return SearchPlan(False, "indexed with prefilter", candidates)

    def _query(self, table: Any, vector: np.ndarray, k: int, sql: str | None,
               exact: bool, nprobes: int | None = None) -> list[Hit]:
        limit = k
        while True:
            query = (table.search(unit(vector).astype(np.float32), vector_column_name="vector")
                     .metric("cosine").select(_HIT_COLUMNS).limit(limit))
            if sql:
                query = query.where(sql, prefilter=True)
            if exact:
                query = query.bypass_vector_index()
            else:
                query = (query.nprobes(nprobes or self.options.nprobes)
                         .refine_factor(self.options.refine_factor))
            result = query.to_arrow()
            scores = [1.0 - d for d in result.column("_distance").to_pylist()]
            hits, seen = [], set()
            for hit in hits_from_table(result, scores):  # a racing duplicate is shown once
                if hit.window_id not in seen:
                    seen.add(hit.window_id)
                    hits.append(hit)
            if len(hits) >= k or result.num_rows < limit:
                return hits[:k]
            limit *= 2  # duplicates took places in the top-k (until maintenance removes them)

    def get(self, model: str, window_ids: Sequence[str]) -> pa.Table:
        """Rows (with vectors) of these ids."""
        table = self._table(table_name(model))
        if table is None or not window_ids:
            return pa.table({})
        sql = filter_sql(Filter(window_ids=tuple(window_ids)))
        return table.search().where(sql).limit(len(window_ids)).to_arrow()

    def labels_of(self, model: str, window_ids: Sequence[str]) -> dict[str, list[str]]:
        """window_id -> sorted union of labels over label sets."""
        table = self._table("lbl_" + table_name(model))
        if table is None or not window_ids:
            return {}
        sql = filter_sql(Filter(window_ids=tuple(window_ids)))
        rows = table.search().where(sql).select(["window_id", "labels"]).limit(
            max(1, 64 * len(window_ids))).to_arrow()
        out: dict[str, set[str]] = {}
        for wid, labels in zip(rows.column("window_id").to_pylist(),
                               rows.column("labels").to_pylist(), strict=True):
            out.setdefault(wid, set()).update(labels)
        return {wid: sorted(labels) for wid, labels in out.items()}

    def windows_with_label(self, model: str, label: str) -> list[str]:
        """Window ids with ``label`` under any label set."""
        table = self._table("lbl_" + table_name(model))
        if table is None:
            return []
        rows = table.search().where(f"array_has(labels, {sql_quote(label)})").select(
            ["window_id"]).limit(table.count_rows() or 1).to_arrow()
        return sorted(set(rows.column("window_id").to_pylist()))
