"""Consumer-group changes, partition positions and lag, for the runner.

kafka-python calls a rebalance listener on its network thread, where blocking consumer
calls (a commit, ``committed()``) are refused and the runner thread may be in the middle of
a step. :class:`RebalanceListener` therefore only queues the change; the runner thread
applies it before it touches the partitions again (``StreamRunner._apply_rebalance``).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from streambind import metrics

logger = logging.getLogger(__name__)


class RebalanceListener(ConsumerRebalanceListener):
    """Queues ``("revoked" | "assigned", partitions)`` for the runner thread."""

    def __init__(self, changes: queue.SimpleQueue, owner: Any) -> None:
        self.changes = changes
        self.owner = owner  # anything with a ``closing`` flag

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Queue a revocation (none while closing: the runner committed or aborted)."""
        if revoked and not self.owner.closing:
            self.changes.put(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Queue an assignment."""
        self.changes.put(("assigned", list(assigned)))
        logger.info("assigned %s", sorted(str(tp) for tp in assigned))


def rewind(consumer: KafkaConsumer, partitions: list[TopicPartition], reset: str) -> None:
    """Move ``partitions`` back to their committed offsets, as a new owner would start.

    Without a committed offset, ``reset`` ("earliest" or "latest") decides. Needed because
    the consumer may keep the position it had before a rebalance.
    """
    for tp in partitions:
        committed = consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, committed)
        elif reset == "earliest":
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek_to_end(tp)


def export_lag(consumer: KafkaConsumer, last_offsets: Mapping[TopicPartition, int]) -> None:
    """Set ``streambind_consumer_lag_records`` for every assigned partition."""
    assigned = list(consumer.assignment())
    if not assigned:
        return
    ends: dict[TopicPartition, int] = {}
    missing = [tp for tp in assigned if consumer.highwater(tp) is None]
    if missing:  # no fetch response yet: ask the broker
        ends = consumer.end_offsets(missing)
    for tp in assigned:
        end = consumer.highwater(tp)
        end = ends.get(tp) if end is None else end
        if end is None:
            continue
        if tp in last_offsets:
            position = last_offsets[tp] + 1
        else:
            try:
                position = consumer.position(tp, timeout_ms=1000)
            except Exception:  # noqa: BLE001 - no position yet; try next time
                continue
        lag = max(0, end - position)
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)


def watch_topics(consumer: KafkaConsumer, topics: Iterable[str]) -> None:
    """Look up subscribed topics that have no partition assigned here.

    A topic created after the consumer joined (or auto-created by its first producer) is
    otherwise only seen at the next periodic metadata refresh, minutes later; the lookup
    refreshes the metadata (a no-op for topics already known), and the group rebalances to
    include the new topic.
    """
    assigned_topics = {tp.topic for tp in consumer.assignment()}
    for topic in topics:
        if topic not in assigned_topics:
            consumer.partitions_for_topic(topic)
