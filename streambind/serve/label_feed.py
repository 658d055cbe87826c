"""Label sets from the compacted ``streambind.labels`` topic, applied without a restart.

Every ingest replica reads the whole topic from the beginning with no consumer group
(each replica needs every label set) and keeps following it; a record whose version is
newer than the set in force (and any pending one) replaces it once its text embeddings have
been computed (``streambind.serve.registry``: the old version stays in force meanwhile),
and a tombstone (key = set name, no value) takes the set of that name out of force,
whether it came from the topic or the labels file.

Every record is checked against ``schemas/label_set.schema.json``. A malformed record is
rejected with its topic, partition, offset and reason in the log and counted in
``streambind_label_records_total{outcome="rejected"}``; the feed never stops on one (an
unexpected error while applying a record rejects that record too). A rejected record is
not copied to the dead-letter topic: every replica reads every label record again at each
start, so each would dead-letter it again, and the compacted topic keeps the record where
the log line points until a valid one replaces it.

Should the thread die all the same (the broker client failing for good), ``alive`` turns
false and the ingest replica's health check fails, so Serve replaces the replica.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from streambind import metrics
from streambind.errors import ConfigError
from streambind.labels import LabelSet
from streambind.serve.registry import LabelRegistry

logger = logging.getLogger(__name__)

MAX_LABEL_RECORD_BYTES = 1 << 20


class LabelFeed:
    """Follows the labels topic in a daemon thread and installs newer label sets."""

    def __init__(
        self,
        registry: LabelRegistry,
        topic: str,
        client_kwargs: Mapping[str, Any],
        poll_timeout_s: float = 0.5,
    ):
        self._registry = registry
        self._topic = topic
        self._client_kwargs = dict(client_kwargs)
        self._poll_timeout_s = poll_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.counts = {"applied": 0, "stale": 0, "removed": 0, "rejected": 0}

    def start(self) -> LabelFeed:
        """Start following the topic; returns self."""
        self._thread = threading.Thread(target=self._run, name="label-feed", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the feed thread is running (false once it died or was stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # noqa: BLE001 - reported through alive/error
            logger.exception("label feed stopped")
            self.error = exc

    def _follow(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            self._topic,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_LABEL_RECORD_BYTES,
            **self._client_kwargs,
        )
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=int(self._poll_timeout_s * 1000))
                for records in batches.values():
                    for record in records:
                        where = f"{record.topic}[{record.partition}]@{record.offset}"
                        self.handle(record.key, record.value, where)
        finally:
            consumer.close()

    def handle(self, key: bytes | None, value: bytes | None, where: str = "") -> str:
        """Apply one record; returns its outcome: applied, stale, removed or rejected.

        ``where`` names the record (topic, partition, offset) in the rejection log line.
        """
        try:
            outcome = self._apply(key, value)
        except ConfigError as exc:
            outcome = "rejected"
            logger.error("rejected label record %s: %s", where or self._topic, exc)
        except Exception as exc:  # noqa: BLE001 - one record must never stop the feed
            outcome = "rejected"
            logger.exception("rejected label record %s: %s: %s", where or self._topic,
                             type(exc).__name__, exc)
        self.counts[outcome] += 1
        metrics.LABEL_RECORDS.labels(outcome=outcome).inc()
        return outcome

    def _apply(self, key: bytes | None, value: bytes | None) -> str:
        name = None if key is None else key.decode("utf-8", "replace")
        if value is None:
            if name is None:
                raise ConfigError("a tombstone without a key names no label set")
            return "removed" if self._registry.remove(name) else "stale"
        if len(value) > MAX_LABEL_RECORD_BYTES:
            raise ConfigError(f"label record of {len(value)} bytes is too large")
        label_set = LabelSet.from_json(value)
        if name is not None and name != label_set.name:
            raise ConfigError(f"record key {name!r} is not the set name {label_set.name!r}")
        # Accepted now, in force once its text embeddings exist (prepared off this thread).
        return "applied" if self._registry.submit(label_set) else "stale"


def publish_label_set(
    producer: Any, topic: str, label_set: LabelSet, timeout_s: float = 10
) -> None:
    """Publish ``label_set`` on the compacted topic (key = set name) and wait for the ack."""
    value = json.dumps(label_set.to_dict()).encode()
    producer.send(topic, key=label_set.name.encode(), value=value).get(timeout=timeout_s)
