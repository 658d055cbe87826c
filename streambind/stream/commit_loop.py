"""When and how the runner commits: every ``commit_interval_s``, what the acknowledged
windows cover (:class:`~streambind.stream.commit.Committer` computes the offsets and the
restart state).

Exactly once, a commit is a transaction boundary: the producer is flushed and every
acknowledgement released first (under the publishing lock, so no output falls between the
flush and the commit); a transaction that cannot commit (a rebalance) was aborted, so every
partition is replayed from its committed offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer

from streambind.stream.assignment import Assignments
from streambind.stream.commit import Committer, TransactionRestarted
from streambind.stream.config import StreamConfig
from streambind.stream.stats import RunnerStats

logger = logging.getLogger(__name__)


class CommitLoop:
    """Commits on schedule (runner thread)."""

    def __init__(
        self,
        config: StreamConfig,
        committer: Committer,
        producer: Any,
        assignments: Assignments,
        publishing: threading.RLock,
        drain_acks: Callable[[], None],
        stats: RunnerStats,
    ) -> None:
        self.config = config
        self.committer = committer
        self.producer = producer
        self.assignments = assignments
        self.publishing = publishing
        self.drain_acks = drain_acks
        self.stats = stats
        self._next_commit_s = 0.0

    def due(self, now_s: float | None = None) -> bool:
        """Whether the commit interval has passed (and, if so, start the next one)."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s < self._next_commit_s:
            return False
        self._next_commit_s = now_s + self.config.commit_interval_s
        return True

    def commit(self, consumer: KafkaConsumer) -> None:
        """Commit what the released windows cover (a transaction, exactly once)."""
        parts = self.assignments.parts
        if not self.config.exactly_once:
            self.stats.commits += self.committer.commit(consumer, parts)
            return
        with self.publishing:
            self.producer.flush()  # every output of this transaction acknowledged...
            self.drain_acks()  # ...and released, so the offsets committed with it cover it
            try:
                self.stats.commits += self.committer.commit(consumer, parts)
            except TransactionRestarted as exc:
                logger.warning("%s; replaying from the committed offsets", exc)
                kept = [tp for tp in parts if tp in consumer.assignment()]
                self.assignments.forget(list(parts))
                self.assignments.rewind(consumer, kept)  # (a poll's records are all handled)
