"""The Python API of memories search: :class:`Memories`.

    mem = Memories("./streambind-memories")            # model: the store's only one
    moments = mem.search([QueryItem("text", "glass breaking")],
                         where=Filter(devices=("kitchen-1",), since_ns=parse_time("...")), k=10)

Hits are fetched with headroom (``overfetch``) and merged into moments, so ``k`` moments come
back even when each event matched several overlapping windows.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from streambind import metrics
from streambind.errors import StreambindError
from streambind.memories.moments import Moment, merge_moments
from streambind.memories.query import QueryEmbedder, QueryError, QueryItem
from streambind.memories.store import NO_FILTER, Filter, SearchPlan, Store, StoreError, open_store

logger = logging.getLogger(__name__)

MODEL_SOURCES = {"imagebind_huge": "huge", "imagebind_tiny_untrained": "tiny",
                 "imagebind_huge_untrained": "huge-untrained"}
"""``model`` field of stored rows -> the model source that produces it (inverse of
``streambind.serve.embedder.model_name``)."""


def parse_time(value: str | int) -> int:
    """ns since the epoch from an integer or an ISO-8601 time (``Z`` or an offset; naive = UTC)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise StreambindError(f"not an ISO-8601 time or integer ns: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class Memories:
    """Search a memories store with queries embedded by the stream's model."""

    def __init__(self, store: Store | str, model: str | None = None, *,
                 runner: object | None = None, model_source: str | None = None) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        if model is None:
            models = self.store.models()
            if len(models) != 1:
                raise StoreError(f"the store holds models {models}; choose one with model=")
            model = models[0]
        self.model = model
        self._runner = runner
        self._model_source = model_source or MODEL_SOURCES.get(model, model)
        self.last_plan: SearchPlan | None = None

    @property
    def runner(self) -> object:
        """The model runner that embeds queries (loaded on first use)."""
        if self._runner is None:
            from streambind.config import ModelSettings
            from streambind.serve.embedder import ModelRunner

            self._runner = ModelRunner(ModelSettings(source=self._model_source))
            name = getattr(self._runner, "model_name", self.model)
            if name != self.model:
                raise StoreError(f"model source {self._model_source!r} produces {name!r}, "
                                 f"but the store's rows are from {self.model!r}")
        return self._runner

    def vector_of(self, window_id: str) -> np.ndarray:
        """The stored (D,) vector of a window (``--like``)."""
        rows = self.store.get(self.model, [window_id])
        if rows.num_rows == 0:
            raise QueryError(f"no stored window {window_id!r} for model {self.model!r}")
        return np.asarray(rows.column("vector")[0].as_py(), dtype=np.float32)

    def embed(self, items: Sequence[QueryItem]) -> np.ndarray:
        """(D,) the combined query vector of ``items``."""
        needs_model = any(i.kind in ("text", "audio", "image") for i in items)
        embedder = QueryEmbedder(self.runner if needs_model else None, self.vector_of)
        return embedder.embed(items)

    def search(
        self,
        items: Sequence[QueryItem] | np.ndarray,
        *,
        where: Filter = NO_FILTER,
        k: int = 10,
        label: str | None = None,
        min_score: float | None = None,
        merge: bool = True,
        gap_ns: int = 0,
        overfetch: int = 4,
        exclude_like: bool = True,
    ) -> list[Moment]:
        """The top-k moments (or single-window moments with ``merge=False``) for a query."""
        if k < 1:
            raise StreambindError("k must be at least 1")
        vector = items if isinstance(items, np.ndarray) else self.embed(items)
        likes = set() if isinstance(items, np.ndarray) else {
            str(i.value) for i in items if i.kind == "like" and i.weight > 0}
        if label is not None:
            ids = self.store.windows_with_label(self.model, label)
            if where.window_ids:
                ids = sorted(set(ids) & set(where.window_ids))
            if not ids:
                return []
            where = replace(where, window_ids=tuple(ids))
        fetch = k * (overfetch if merge else 1) + (len(likes) if exclude_like else 0)
        started_s = time.perf_counter()
        hits, self.last_plan = self.store.search(self.model, vector, fetch, where)
        metrics.MEMORIES_SEARCH_SECONDS.labels("exact" if self.last_plan.exact else "indexed"
                                               ).observe(time.perf_counter() - started_s)
        if exclude_like:  # "more like this" should not return the example itself
            hits = [h for h in hits if h.window_id not in likes]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        if merge:
            moments = merge_moments(hits, gap_ns)
        else:
            moments = [Moment(h, h.window_start_ns, h.window_end_ns, 1, (h.modality,))
                       for h in sorted(hits, key=lambda h: -h.score)]
        moments = moments[:k]
        labels = self.store.labels_of(self.model, [m.best.window_id for m in moments])
        return [replace(m, labels=tuple(labels.get(m.best.window_id, ()))) for m in moments]
