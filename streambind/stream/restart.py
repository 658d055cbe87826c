"""Restart state per partition: the watermark and per-device emitted-through marks.

A restarted consumer replays from the committed offset. To rebuild exactly the windows that
were still open (and not partial copies of windows already emitted) it needs the state that
went with that commit. Kafka keeps it as commit metadata; brokers that drop commit metadata
(the embedded Tansu broker does) get it from a side topic, written and acknowledged *before*
the offsets are committed, so the state is never older than the committed offset.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)


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
) -> dict[bytes, dict[str, Any]]:
    """Read the state topic to its end; the latest document per key of ``group_id``."""
    kwargs = {k: v for k, v in consumer_kwargs.items()
              if k not in ("group_id", "enable_auto_commit", "max_poll_records",
                           "session_timeout_ms", "heartbeat_interval_ms", "auto_offset_reset")}
    consumer = KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **kwargs)
    out: dict[bytes, dict[str, Any]] = {}
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
                        out[msg.key] = parse_state(msg.value)
                last_new = time.monotonic()
            caught_up = all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp) for tp in tps)
            if (caught_up and not batches) or time.monotonic() - last_new > idle_s * 10:
                break
    finally:
        consumer.close()
    return out
