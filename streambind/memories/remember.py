"""``remember``: the consumer group that writes ``streambind.embeddings`` into the store.

At least once, never duplicated: records are decoded into a batch; when the batch is full
(``batch_rows``) or old enough (``batch_wait_s``) it is upserted into the store in one commit
per model, and only then are the consumed offsets committed. A crash between the two replays
the batch, and the upsert by ``window_id`` makes the replay a no-op. Labels come from
``streambind.events`` in the same group and are written in the same step.

Maintenance (compaction, vector index refresh, retention by age) runs on its own thread
(:class:`Maintenance`), off the write path. Freshness (window end to searchable, i.e. to the
store commit) is observed per row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streambind import metrics
from streambind.memories.rows import (
    FusionState,
    RecordError,
    decode_embeddings,
    decode_event,
    label_table,
    memory_table,
)
from streambind.memories.store import Store, StoreError

logger = logging.getLogger(__name__)

# Defined once in streambind.metrics; the short names are kept for this module's readers.
FRESHNESS_SECONDS = metrics.MEMORIES_FRESHNESS_SECONDS
STORED = metrics.MEMORIES_ROWS
REJECTED = metrics.MEMORIES_REJECTED


@dataclass(frozen=True)
class RememberConfig:
    """Settings of one ``remember`` process."""

    bootstrap: str
    group: str = "streambind-remember"
    embeddings_topic: str = "streambind.embeddings"
    events_topic: str | None = "streambind.events"  # None: no labels
    dlq_topic: str | None = "streambind.dlq"
    batch_rows: int = 2048  # at most; a batch is also cut after batch_wait_s
    batch_wait_s: float = 1.0
    fusion: bool = True
    optimize_every_s: float = 60.0
    retention_s: float | None = None  # delete windows that ended longer ago than this
    max_poll_records: int = 500
    session_timeout_ms: int = 6_000  # a dead member's partitions move after this
    kafka: dict[str, Any] = field(default_factory=dict)  # extra client settings (security)


class Maintenance:
    """Compaction, index refresh and retention on a timer thread."""

    def __init__(self, store: Store, config: RememberConfig,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.config = config
        self.clock_ns = clock_ns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def run_once(self) -> None:
        """One pass over every model: retention first, then compaction and index refresh."""
        for model in self.store.models():
            try:
                if self.config.retention_s is not None:
                    cutoff = self.clock_ns() - int(self.config.retention_s * 1e9)
                    removed = self.store.delete(model, ended_before_ns=cutoff)
                    if removed:
                        logger.info("retention: %d memories of %s removed", removed, model)
                self.store.optimize(model)
            except (StoreError, OSError, RuntimeError, ValueError) as exc:
                # A conflicting concurrent write makes a pass fail; the next one retries.
                logger.warning("maintenance of %s failed (retried later): %s", model, exc)
        self.runs += 1

    def start(self) -> None:
        """Run every ``optimize_every_s`` until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(self.config.optimize_every_s):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="memories-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer thread (a pass in progress finishes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


class Rememberer:
    """Consumes the embeddings (and events) topics into a store; see the module docstring."""

    def __init__(self, store: Store, config: RememberConfig) -> None:
        self.store = store
        self.config = config
        self.fusion = FusionState() if config.fusion else None
        self.rows_stored = 0
        self._consumer: Any = None
        self._producer: Any = None
        self._stop = threading.Event()

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        topics = [self.config.embeddings_topic]
        if self.config.events_topic:
            topics.append(self.config.events_topic)
        self._consumer = KafkaConsumer(
            *topics, bootstrap_servers=self.config.bootstrap, group_id=self.config.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            # A poll may return more than a batch (the flush cuts batches); a short fetch
            # wait keeps freshness low when the topic is quiet.
            max_poll_records=self.config.max_poll_records, fetch_max_wait_ms=100,
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.config.session_timeout_ms // 4),
            **self.config.kafka)
        if self.config.dlq_topic:
            self._producer = KafkaProducer(bootstrap_servers=self.config.bootstrap,
                                           **self.config.kafka)

    def stop(self) -> None:
        """Ask :meth:`run` to finish its batch, commit and return."""
        self._stop.set()

    def run(self, max_idle_s: float | None = None) -> int:
        """Consume until stopped (or idle for ``max_idle_s``); returns rows stored."""
        self._connect()
        memories: list = []
        labels: dict[str, list] = {}
        batch_started = time.monotonic()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                polled = self._consumer.poll(timeout_ms=200)
                for tp, records in polled.items():
                    for record in records:
                        self._take(tp.topic, record, memories, labels)
                if polled or not self._consumer.assignment():
                    idle_since = time.monotonic()  # idle only counts once partitions are ours
                full = len(memories) >= self.config.batch_rows
                due = time.monotonic() - batch_started >= self.config.batch_wait_s
                if polled and (full or due) or (not polled and (memories or labels)):
                    self._flush(memories, labels)
                    memories, labels = [], {}
                    batch_started = time.monotonic()
                if not polled and max_idle_s is not None:
                    if time.monotonic() - idle_since >= max_idle_s:
                        break
            self._flush(memories, labels)
        finally:
            self._consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.close(timeout=10)
        return self.rows_stored

    def _take(self, topic: str, record: Any, memories: list, labels: dict) -> None:
        try:
            if topic == self.config.embeddings_topic:
                for memory in decode_embeddings(record.value):
                    memories.append(memory)
                    fused = self.fusion.add(memory) if self.fusion else None
                    if fused is not None:
                        memories.append(fused)
            else:
                decoded = decode_event(record.value)
                if decoded is not None and decoded[1]["labels"]:
                    labels.setdefault(decoded[0], []).append(decoded[1])
        except RecordError as exc:
            REJECTED.labels(exc.reason).inc()
            logger.warning("%s[%d]@%d rejected (%s): %s", topic, record.partition,
                           record.offset, exc.reason, exc)
            self._dead_letter(topic, record, exc)

    def _dead_letter(self, topic: str, record: Any, exc: RecordError) -> None:
        if self._producer is None:
            return
        headers = list(record.headers or []) + [
            ("error.reason", exc.reason.encode()), ("error.detail", str(exc)[:500].encode()),
            ("source.topic", topic.encode()), ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode())]
        self._producer.send(self.config.dlq_topic, key=record.key, value=record.value,
                            headers=headers).get(timeout=30)

    def _flush(self, memories: list, labels: dict) -> None:
        """Write the batch (store commit), then commit the offsets it covers."""
        by_model: dict[str, list] = {}
        for memory in memories:
            by_model.setdefault(memory.model, []).append(memory)
        now_ns = time.time_ns()
        for model, items in by_model.items():
            table = memory_table(items, now_ns)
            self._with_retry(lambda m=model, t=table: self.store.upsert(m, t))
            committed_ns = time.time_ns()
            for memory in items:
                FRESHNESS_SECONDS.observe(max(0.0, (committed_ns - memory.window_end_ns) / 1e9))
            STORED.labels("window").inc(len(items))
            self.rows_stored += len(items)
        for model, rows in labels.items():
            table = label_table(rows)
            self._with_retry(lambda m=model, t=table: self.store.upsert_labels(m, t))
            STORED.labels("labels").inc(len(rows))
        if self._consumer is not None:
            self._consumer.commit()  # everything polled so far is in the store now

    def _with_retry(self, write: Callable[[], int], attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                write()
                return
            except (StoreError, OSError, RuntimeError) as exc:
                # A commit conflict with maintenance (compaction) is retried; anything that
                # persists stops the process before any offset is committed.
                if attempt == attempts - 1:
                    raise
                logger.warning("store write failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.2 * 2 ** attempt)
