"""Where the consumer stands against the partitions' ends: lag metrics and "behind".

While the consumer is behind (replaying a backlog), device idleness means nothing: a device
is not idle because its records still wait in Kafka, so the runner freezes the idle clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition

from streambind.stream.config import StreamConfig
from streambind.stream.rebalance import export_lag, watch_topics


class LagMonitor:
    """Lag export and the "behind" test (runner thread)."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._last_offset: dict[TopicPartition, int] = {}
        self._next_lag_s = 0.0

    def behind(self, consumer: KafkaConsumer, batches: dict) -> bool:
        """True while replaying a backlog: then device idleness means nothing."""
        for tp, messages in batches.items():
            if messages:
                self._last_offset[tp] = messages[-1].offset
        if sum(len(m) for m in batches.values()) >= self.config.max_poll_records:
            return True
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater > self._last_offset.get(tp, -1) + 1:
                return True
        return False

    def forget(self, tp: TopicPartition) -> None:
        """Forget what was seen of ``tp`` (revoked, or sent back to its committed offset)."""
        self._last_offset.pop(tp, None)

    def export(self, consumer: KafkaConsumer, topics: Iterable[str]) -> None:
        """Every ``lag_interval_s``: export the lag and look up topics not assigned yet."""
        now_s = time.monotonic()
        if now_s < self._next_lag_s:
            return
        export_lag(consumer, self._last_offset)
        watch_topics(consumer, topics)
        self._next_lag_s = now_s + self.config.lag_interval_s
