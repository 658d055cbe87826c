"""Where the consumer stands against the partitions' ends: lag metrics and "behind".

While the consumer is behind (replaying a backlog), device idleness means nothing: a device
is not idle because its records still wait in Kafka, so the runner freezes the idle clock.
"Behind" compares each partition's high-water mark with the consumer's *position* (the
next offset it hands out), not with the offsets seen since the assignment: a partition
consumed to its end before a restart, with nothing new, has seen no record since and is
still not behind (otherwise the idle clock would stay frozen for good and no device on the
replica would get its last windows).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streambind.stream.config import StreamConfig
from streambind.stream.rebalance import export_lag, watch_topics

logger = logging.getLogger(__name__)


def position(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's position on ``tp`` without waiting (None when not known yet)."""
    try:
        return consumer.position(tp, timeout_ms=0)
    except (KafkaError, AssertionError) as exc:  # not assigned any more, or no position yet
        logger.debug("no position for %s: %s", tp, exc)
        return None


class LagMonitor:
    """Lag export and the "behind" test (runner thread)."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._next_lag_s = 0.0

    def behind(self, consumer: KafkaConsumer, batches: dict) -> bool:
        """True while records wait in Kafka (a backlog): then device idleness means nothing.

        A full poll means more are waiting; otherwise a partition is behind when its
        high-water mark (from the last fetch) is past the consumer's position. A partition
        with no fetch response yet (no high-water mark) does not count.
        """
        if sum(len(m) for m in batches.values()) >= self.config.max_poll_records:
            return True
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            pos = position(consumer, tp)
            if pos is None or highwater > pos:
                return True
        return False

    def forget(self, tp: TopicPartition) -> None:
        """Nothing is kept per partition (positions come from the consumer)."""

    def export(self, consumer: KafkaConsumer, topics: Iterable[str]) -> None:
        """Every ``lag_interval_s``: export the lag and look up topics not assigned yet."""
        now_s = time.monotonic()
        if now_s < self._next_lag_s:
            return
        export_lag(consumer, {})  # lag = high-water mark - position
        watch_topics(consumer, topics)
        self._next_lag_s = now_s + self.config.lag_interval_s
