"""Restart state per partition: the watermark and per-device emitted-through marks.

A restarted consumer replays from the committed offset. To rebuild exactly the windows that
were still open (and not partial copies of windows already emitted) it needs the state that
went with that commit. Kafka keeps it as commit metadata; brokers that drop commit metadata
(the embedded Tansu broker does) get it from a side topic, written and acknowledged *before*
the offsets are committed, so the state is never older than the committed offset. With
exactly-once delivery the state is written in the commit's transaction and only a document
for exactly the committed offset is used: a later one belongs to an aborted transaction
(which a broker that hides aborted records never shows, and Tansu does).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)

# Documents kept per key when reading the side topic: the committed one is among the last
# few (at most one aborted transaction per commit interval follows it).
STATE_HISTORY = 16


def state_key(group_id: str, tp: TopicPartition) -> bytes:
    """The side-topic key of one partition's state for one consumer group."""
    return f"{group_id}|{tp.topic}|{tp.partition}".encode()


def parse_state(text: str | bytes | None) -> dict[str, Any]:
    """Parse a state document; an unreadable one is ignored (at-least-once still holds)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        logger.warning("ignoring unreadable restart state")
        return {}
    return doc if isinstance(doc, dict) else {}


def load_side_topic(
    consumer_kwargs: dict[str, Any], topic: str, group_id: str, idle_s: float = 0.3,
    timeout_s: float = 30.0,
) -> dict[bytes, list[dict[str, Any]]]:
    """Read the state topic to its end; per key of ``group_id``, its last documents (oldest
    first, at most ``STATE_HISTORY``)."""
    kwargs = {k: v for k, v in consumer_kwargs.items()
              if k not in ("group_id", "enable_auto_commit", "max_poll_records",
                           "session_timeout_ms", "heartbeat_interval_ms", "auto_offset_reset")}
    consumer = KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **kwargs)
    out: dict[bytes, deque[dict[str, Any]]] = {}
    prefix = f"{group_id}|".encode()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=100)
            for messages in batches.values():
                for msg in messages:
                    if msg.key and msg.key.startswith(prefix):
                        history = out.setdefault(msg.key, deque(maxlen=STATE_HISTORY))
                        history.append(parse_state(msg.value))
                last_new = time.monotonic()
            caught_up = all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp) for tp in tps)
            if (caught_up and not batches) or time.monotonic() - last_new > idle_s * 10:
                break
    finally:
        consumer.close()
    return {key: list(docs) for key, docs in out.items()}


def pick_state(
    docs: Sequence[dict[str, Any]], committed_offset: int | None, exact: bool
) -> dict[str, Any]:
    """The side-topic document that goes with ``committed_offset``, or ``{}``.

    At least once: the latest document, unless it is older than the commit (a newer one is
    safe: it was written just before a commit that did not happen). Exactly once
    (``exact``): the latest document for exactly the committed offset.
    """
    def offset_of(doc: dict[str, Any]) -> int:
        try:
            return int(doc.get("offset", -1))
        except (TypeError, ValueError):
            return -1

    if exact:
        matching = [d for d in docs if offset_of(d) == committed_offset]
        return matching[-1] if matching else {}
    if not docs:
        return {}
    latest = docs[-1]
    if committed_offset is not None and offset_of(latest) < committed_offset:
        return {}  # older than the commit: not the state that went with it
    return latest
