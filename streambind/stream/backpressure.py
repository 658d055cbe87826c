"""Backpressure: pause the assigned partitions while too much work is held.

Two bounds, per replica (one runner):

* windows: closed windows queued to the worker and not yet acknowledged; at
  ``max_buffered_windows`` the consumer pauses and resumes at half of it;
* bytes: the payload held in open windows (the sum of
  :attr:`~streambind.stream.windows.Windower.held_bytes` over the assigned partitions) plus
  the payload of the windows queued to the worker; above ``max_buffered_bytes`` the consumer
  pauses and resumes at :data:`RESUME_FRACTION` of it.

Pausing keeps the consumer polling, so it stays in its group. The byte bound is checked
after every record (:meth:`Backpressure.feed`), from what that record added to its
partition's open windows (one look at one partition, not a sum over all of them per record;
the full measure is taken again when the running total reaches the bound): the records of a
poll beyond the bound are not handled now, the consumer is sent back to the first of them
(``seek``, they are fetched again after the resume), so the bytes held never exceed the
bound by more than what one record adds.

Never a deadlock: queued windows drain through the worker by themselves, but open windows
only close when their device's watermark or idle timeout passes, and a paused consumer
reads no record to move a watermark. The runner freezes the idle clock while paused (a
device whose records wait in Kafka is not idle), except when the pause waits for open
windows (:attr:`Backpressure.waits_for_open_windows`: the open bytes alone are above the
resume level, so draining the worker cannot end the pause). Then the idle clock runs, the
devices' windows close by the idle timeout, and the bound holds at a price that is counted:
records of windows closed that way that arrive after the resume are late. That only happens
when ``max_buffered_bytes`` is smaller than what the open windows of the active devices need;
such windows are counted (``streambind_windows_closed_at_bound_total``) and a warning (the
first, then at most one per :data:`WARN_INTERVAL_S`) says which setting to raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streambind import metrics
from streambind.stream.config import StreamConfig
from streambind.stream.stats import RunnerStats
from streambind.stream.window_types import ClosedWindow

logger = logging.getLogger(__name__)

RESUME_FRACTION = 0.75  # of max_buffered_bytes: resume at or below it (hysteresis)
WARN_INTERVAL_S = 60.0  # between warnings about windows closed at the bound


class Backpressure:
    """Pauses and resumes the consumer's partitions (runner thread).

    ``open_bytes``: returns the bytes held in open windows now; ``queued_bytes``: the bytes
    of the windows queued to the worker (both default to 0: the byte bound is then off);
    ``open_bytes_of``: the bytes held in the open windows of one partition (default: the
    whole ``open_bytes``, measured per record).
    """

    def __init__(
        self, config: StreamConfig, stats: RunnerStats, *,
        open_bytes: Callable[[], int] = lambda: 0, queued_bytes: Callable[[], int] = lambda: 0,
        open_bytes_of: Callable[[TopicPartition], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.stats = stats
        self.open_bytes = open_bytes
        self.queued_bytes = queued_bytes
        self.open_bytes_of = open_bytes_of or (lambda _tp: open_bytes())
        self.paused = False
        self.resume_bytes = int(config.max_buffered_bytes * RESUME_FRACTION)
        self._open = 0
        self._queued = 0
        self._clock = clock
        self._unwarned = 0  # windows closed at the bound since the last warning
        self._warned_s: float | None = None

    @property
    def held_bytes(self) -> int:
        """Open plus queued window bytes at the last check."""
        return self._open + self._queued

    @property
    def waits_for_open_windows(self) -> bool:
        """Paused, and only closing open windows can end it (then the idle clock must run)."""
        return self.paused and self._open > self.resume_bytes

    def _measure(self) -> int:
        self._open, self._queued = int(self.open_bytes()), int(self.queued_bytes())
        total = self._open + self._queued
        if total > self.stats.max_buffered_bytes:
            self.stats.max_buffered_bytes = total
        return total

    def full(self) -> bool:
        """Whether the held bytes are above ``max_buffered_bytes`` (measured now)."""
        return self._measure() > self.config.max_buffered_bytes

    def apply(self, consumer: KafkaConsumer, buffered: int) -> None:
        """Pause at a bound (also partitions assigned since), resume below both resume
        levels. ``buffered``: windows queued to the worker and not yet acknowledged."""
        limit = self.config.max_buffered_windows
        total = self._measure()
        over_bytes = total > self.config.max_buffered_bytes
        assigned = consumer.assignment()
        if (buffered >= limit or over_bytes) and assigned:
            if not self.paused:
                self.stats.pauses += 1
                logger.info("pausing %d partitions: %d windows, %d bytes held (%d open)",
                            len(assigned), buffered, total, self._open)
            consumer.pause(*assigned)  # also covers partitions assigned since
            self.paused = True
        elif self.paused and buffered <= limit // 2 and total <= self.resume_bytes:
            consumer.resume(*consumer.paused())
            self.paused = False
        metrics.PAUSED_PARTITIONS.set(len(consumer.paused()))
        metrics.OPEN_WINDOW_BYTES.set(self._open)
        metrics.QUEUED_WINDOW_BYTES.set(self._queued)

    def feed(
        self, consumer: KafkaConsumer,
        batches: Sequence[tuple[TopicPartition, Sequence[Any]]],
        handle: Callable[[KafkaConsumer, TopicPartition, Any], None],
    ) -> int:
        """Hand the polled records to ``handle`` in order until the byte bound is passed;
        send the consumer back to the first record not handled on each partition (and
        pause). Returns the number of records handled."""
        handled = 0
        limit = self.config.max_buffered_bytes
        # An upper bound of the bytes held: records only add to the open windows of their
        # own partition here, and queued windows only drain meanwhile (the worker).
        total = self._measure()
        for n, (tp, messages) in enumerate(batches):
            for i, msg in enumerate(messages):
                before = self.open_bytes_of(tp)
                handle(consumer, tp, msg)
                handled += 1
                total += self.open_bytes_of(tp) - before
                if total > limit:
                    if self.full():  # measured now, exactly
                        rest = [(tp, messages[i + 1:]), *batches[n + 1:]]
                        self._hold_back(consumer, rest)
                        return handled
                    total = self.held_bytes
                elif total > self.stats.max_buffered_bytes:
                    self.stats.max_buffered_bytes = total
        self._measure()
        return handled

    def _hold_back(self, consumer: KafkaConsumer,
                   rest: Iterable[tuple[TopicPartition, Sequence[Any]]]) -> None:
        for tp, messages in rest:
            if messages:
                consumer.seek(tp, messages[0].offset)  # fetched again after the resume
        assigned = consumer.assignment()
        if assigned:
            if not self.paused:
                self.stats.pauses += 1
                logger.info("pausing %d partitions: %d bytes held (%d open)", len(assigned),
                            self.held_bytes, self._open)
            consumer.pause(*assigned)
            self.paused = True
        metrics.PAUSED_PARTITIONS.set(len(consumer.paused()))

    def count_closed_at_bound(self, closed: Iterable[ClosedWindow]) -> None:
        """Count the windows of ``closed`` that the idle timeout closed while the pause
        waits for open windows, and warn (the first time, then at most once per
        :data:`WARN_INTERVAL_S`): the bound is too small for the active devices."""
        if not self.waits_for_open_windows:
            return
        forced = [w for w in closed if w.closed_by == "idle"]
        for window in forced:
            metrics.WINDOWS_CLOSED_AT_BOUND.labels(window.modality).inc()
        self.stats.windows_closed_at_bound += len(forced)
        self._unwarned += len(forced)
        now_s = self._clock()
        if not forced or (self._warned_s is not None
                          and now_s - self._warned_s < WARN_INTERVAL_S):
            return
        logger.warning(
            "the byte bound closed %d windows early: open windows alone hold %d bytes, above "
            "the resume level %d (3/4 of max_buffered_bytes), so they close by the idle "
            "timeout and their records still unread will be late. Raise max_buffered_bytes "
            "(about 0.5 MB per active device with all five modalities) or serve fewer "
            "devices per replica.", self._unwarned, self._open, self.resume_bytes)
        self._warned_s = now_s
        self._unwarned = 0
