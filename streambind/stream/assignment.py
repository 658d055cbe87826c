"""Applying consumer-group changes: the partitions this member owns and their state.

kafka-python runs the rebalance listener on its network thread
(:class:`~streambind.stream.rebalance.RebalanceListener` only queues the change); the runner
thread calls :meth:`Assignments.apply` before it touches the partitions again. A partition's
state (:class:`~streambind.stream.partition.PartitionState`) is created on its first record,
from the restart state stored with its committed offset (:meth:`Assignments.part`), and
dropped on revocation (:meth:`Assignments.forget`). The restart states of the partitions a
rebalance assigns are fetched when it is applied, all at once: one offset fetch for all of
them and at most one read of the side topic, not a broker round trip per partition on the
partition's first record (20 partitions took 0.25 s of the consumer thread that way).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streambind.stream.commit import Committer
from streambind.stream.config import StreamConfig
from streambind.stream.partition import IdleClock, PartitionState
from streambind.stream.rebalance import rewind
from streambind.stream.restart import load_side_topic, parse_state, pick_state, state_key

logger = logging.getLogger(__name__)


def committed_offsets(consumer: KafkaConsumer,
                      partitions: list[TopicPartition]) -> dict[TopicPartition, Any]:
    """Each partition's committed ``OffsetAndMetadata`` (None: never committed), in one
    offset fetch: ``KafkaConsumer.committed`` asks for one partition per request, so this
    uses the coordinator call it wraps, where the installed kafka-python has it."""
    fetch = getattr(getattr(consumer, "_coordinator", None), "fetch_committed_offsets", None)
    if fetch is None:
        return {tp: consumer.committed(tp, metadata=True) for tp in partitions}
    found = fetch(list(partitions))
    return {tp: found.get(tp) for tp in partitions}


class Assignments:
    """The assigned partitions' state and the application of rebalances (runner thread)."""

    def __init__(
        self,
        config: StreamConfig,
        idle_clock: IdleClock,
        changes: queue.SimpleQueue,
        publishing: threading.RLock,
        on_forget: Callable[[TopicPartition], None] = lambda tp: None,
    ) -> None:
        self.config = config
        self.idle_clock = idle_clock
        self.changes = changes  # filled by the RebalanceListener
        self.publishing = publishing
        self.on_forget = on_forget
        self.committer: Committer | None = None  # set once the producer exists
        self.sink: Any = None  # set by the runner: its restart state travels with commits
        self.parts: dict[TopicPartition, PartitionState] = {}
        self._modality_of = config.modality_of()
        self._side_state: dict[bytes, dict] | None = None
        self._docs: dict[TopicPartition, dict] = {}  # restart states fetched on assignment
        self._rewind_on_return: set[TopicPartition] = set()

    # -- partition state ---------------------------------------------------------------

    def part(self, consumer: KafkaConsumer, tp: TopicPartition) -> PartitionState:
        """The state of ``tp``, created from its restart state on first use."""
        part = self.parts.get(tp)
        if part is None:
            modality = self._modality_of[tp.topic]
            spec = self.config.window_spec(modality)
            doc = self._docs.pop(tp, None)
            if doc is None:
                doc = self.restart_docs(consumer, [tp])[tp]
            part = self.parts[tp] = PartitionState.restored(
                tp, spec, self.idle_clock, doc, sink=self.sink, modality=modality)
        return part

    def restart_docs(self, consumer: KafkaConsumer,
                     partitions: list[TopicPartition]) -> dict[TopicPartition, dict]:
        """The restart state stored with each partition's committed offset (in the commit
        metadata, or on the side topic), fetched for all ``partitions`` at once."""
        committed = committed_offsets(consumer, partitions)
        docs = {tp: parse_state(c.metadata if c is not None else None)
                for tp, c in committed.items()}
        for tp, doc in docs.items():
            if (doc and not doc.get("side")) or not self.config.state_topic:
                continue  # else: the broker dropped it, or it did not fit (on the state topic)
            if self._side_state is None:
                self._side_state = load_side_topic(self.config.consumer_kwargs(),
                                                   self.config.state_topic, self.config.group_id)
            side = self._side_state.get(state_key(self.config.group_id, tp), [])
            offset = None if committed[tp] is None else committed[tp].offset
            docs[tp] = pick_state(side, offset, exact=self.config.exactly_once)
        return docs

    def is_live(self, part: object) -> bool:
        """Whether ``part`` is still assigned here (the worker drops outputs of revoked ones)."""
        return isinstance(part, PartitionState) and self.parts.get(part.tp) is part

    # -- group changes -----------------------------------------------------------------

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop the state of revoked partitions; their records are replayed elsewhere."""
        for tp in partitions:
            if self.parts.pop(tp, None) is not None:
                logger.info("partition %s revoked", tp)
            if self.committer is not None:
                self.committer.forget(tp)
            self.on_forget(tp)

    def apply(self, consumer: KafkaConsumer) -> set[TopicPartition]:
        """Apply what the group changed (queued by the rebalance listener); returns the
        partitions sent back to their committed offsets.

        A revoked partition's state is dropped: at least once, its uncommitted tail is
        replayed by the new owner. Exactly once, the open transaction is aborted as well
        (its offsets can no longer commit: the group generation moved on), with the state
        of every partition. A partition that comes back to this member after its state was
        dropped (or that it kept) starts from its committed offset and restart state, as any
        new owner does: the consumer would otherwise keep its position past those records.
        """
        rewound: set[TopicPartition] = set()
        while True:
            try:
                change, partitions = self.changes.get_nowait()
            except queue.Empty:
                return rewound
            self._side_state = None  # re-read: another member may have written it
            self._docs.clear()  # likewise the committed offsets
            if change == "revoked":
                with self.publishing:
                    if self.config.exactly_once and self.committer is not None:
                        self.committer.restart_transaction()
                        partitions = list(self.parts)
                    self.forget(partitions)
                kept = [tp for tp in partitions if tp in consumer.assignment()]
                self.rewind(consumer, kept)  # exactly once, with a cooperative assignor
                rewound.update(kept)
                self._rewind_on_return.update(set(partitions) - set(kept))
                continue
            assigned = consumer.assignment()  # a later rebalance may have moved some on
            fresh = [tp for tp in partitions
                     if tp in self._rewind_on_return and tp in assigned and tp not in self.parts]
            self.rewind(consumer, fresh)
            self._rewind_on_return.difference_update(fresh)
            rewound.update(fresh)
            new = [tp for tp in partitions if tp in assigned and tp not in self.parts]
            if new:
                self._docs.update(self.restart_docs(consumer, new))

    def rewind(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Send ``partitions`` back to their committed offsets (see :func:`rewind`)."""
        rewind(consumer, partitions, self.config.auto_offset_reset)
        for tp in partitions:
            self.on_forget(tp)
