"""Backpressure: pause the assigned partitions while too much work is buffered.

Closed windows queued to the worker and not yet acknowledged are counted; at
``max_buffered_windows`` the consumer pauses every assigned partition (it keeps polling, so
it stays in its group) and resumes them below half of it.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer

from streambind import metrics
from streambind.stream.config import StreamConfig
from streambind.stream.stats import RunnerStats

logger = logging.getLogger(__name__)


class Backpressure:
    """Pauses and resumes the consumer's partitions (runner thread)."""

    def __init__(self, config: StreamConfig, stats: RunnerStats) -> None:
        self.config = config
        self.stats = stats
        self.paused = False

    def apply(self, consumer: KafkaConsumer, buffered: int) -> None:
        """Pause at the limit (also partitions assigned since), resume below half of it."""
        limit = self.config.max_buffered_windows
        assigned = consumer.assignment()
        if buffered >= limit and assigned:
            if not self.paused:
                self.stats.pauses += 1
                logger.info("pausing %d partitions: %d windows buffered", len(assigned),
                            buffered)
            consumer.pause(*assigned)  # also covers partitions assigned since
            self.paused = True
        elif self.paused and buffered <= limit // 2:
            consumer.resume(*consumer.paused())
            self.paused = False
        metrics.PAUSED_PARTITIONS.set(len(consumer.paused()))
