"""Label sets from the compacted ``streambind.labels`` topic, applied without a restart.

Every ingest replica reads the whole topic from the beginning with no consumer group
(each replica needs every label set) and keeps following it; a record whose version is
newer than the set in force replaces it. Malformed records are logged and skipped; the
feed never stops on one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from streambind.errors import ConfigError
from streambind.labels import LabelRegistry, LabelSet

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
        self.applied = 0
        self.rejected = 0

    def start(self) -> LabelFeed:
        """Start following the topic; returns self."""
        self._thread = threading.Thread(target=self._run, name="label-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
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
                        self.handle(record.key, record.value)
        finally:
            consumer.close()

    def handle(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record; returns whether a new label set came into force."""
        if value is None:
            # A tombstone deletes nothing while running: labels in force stay until replaced.
            return False
        try:
            if len(value) > MAX_LABEL_RECORD_BYTES:
                raise ConfigError(f"label record of {len(value)} bytes is too large")
            label_set = LabelSet.from_json(value)
            if key is not None and key.decode("utf-8", "replace") != label_set.name:
                raise ConfigError(f"record key {key!r} is not the set name {label_set.name!r}")
        except ConfigError as exc:
            self.rejected += 1
            logger.error("rejected label set record on %s: %s", self._topic, exc)
            return False
        applied = self._registry.update(label_set)
        self.applied += int(applied)
        return applied


def publish_label_set(
    producer: Any, topic: str, label_set: LabelSet, timeout_s: float = 10
) -> None:
    """Publish ``label_set`` on the compacted topic (key = set name) and wait for the ack."""
    value = json.dumps(label_set.to_dict()).encode()
    producer.send(topic, key=label_set.name.encode(), value=value).get(timeout=timeout_s)
