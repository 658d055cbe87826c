"""Decoding off the consumer thread: the records of one poll decode while the next is fetched.

Decoding a record (:func:`~streambind.stream.records.decode_record`: IPC, validation, PCM)
is a pure function of the record, so it can run on other threads while the consumer thread
waits for the broker. :class:`DecodePipeline` keeps one poll in flight: the runner submits
the records of poll *k*, then applies (windows, offsets, dead letters: state that only the
consumer thread touches) the decoded records of poll *k - 1*. Order per device is kept:
the records of one partition (where all of a device's records of a modality are) are
decoded in order by one task and applied in poll order.

A submitted poll can go stale before it is applied: a rebalance sends a partition back to
its committed offset, or the byte bound sends the consumer back to a record (``seek``).
The runner then calls :meth:`DecodePipeline.skip` with those partitions and their pending
records are dropped; the consumer reads them again from where it was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from streambind.errors import RecordError
from streambind.stream.chunks import SensorChunk

logger = logging.getLogger(__name__)

Decoded = list[SensorChunk] | RecordError
Decode = Callable[[TopicPartition, Any], Decoded]


@dataclass
class DecodedPoll:
    """The records of one poll and, per partition, their decoded form (same order)."""

    batches: list[tuple[TopicPartition, Sequence[Any]]]
    results: dict[TopicPartition, list[Decoded]] = field(default_factory=dict)
    skipped: set[TopicPartition] = field(default_factory=set)

    def live(self, assigned: Iterable[TopicPartition]) -> list[tuple[TopicPartition,
                                                                    Sequence[Any]]]:
        """The batches still to apply: partitions assigned and not skipped."""
        keep = set(assigned) - self.skipped
        return [(tp, msgs) for tp, msgs in self.batches if tp in keep]


def _decode_all(decode: Decode, tp: TopicPartition, messages: Sequence[Any]) -> list[Decoded]:
    return [decode(tp, msg) for msg in messages]


class DecodePipeline:
    """One poll decoding in the background (see the module docstring).

    ``threads``: decode threads (the records of one partition always go to one task, so
    order per device holds for any number). Python threads share the interpreter lock;
    decoding still overlaps the consumer's waits for the broker, and Arrow, numpy and the
    PCM conversion release the lock for their work.
    """

    def __init__(self, decode: Decode, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"need threads >= 1, got {threads}")
        self.decode = decode
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="streambind-decode")
        self._pending: DecodedPoll | None = None
        self._futures: dict[TopicPartition, Future] = {}

    @property
    def pending(self) -> bool:
        """Whether a submitted poll waits to be taken."""
        return self._pending is not None

    def submit(self, batches: Sequence[tuple[TopicPartition, Sequence[Any]]]) -> None:
        """Start decoding the records of a poll. The previous one must have been taken."""
        if self._pending is not None:
            raise RuntimeError("take() the pending poll before submitting the next")
        batches = [(tp, msgs) for tp, msgs in batches if msgs]
        if not batches:
            return
        self._pending = DecodedPoll(list(batches))
        self._futures = {tp: self._executor.submit(_decode_all, self.decode, tp, msgs)
                         for tp, msgs in batches}

    def skip(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the pending records of ``partitions`` (the consumer reads them again)."""
        if self._pending is not None:
            self._pending.skipped.update(partitions)

    def take(self) -> DecodedPoll | None:
        """The pending poll, once decoded (waits for it); None when none is pending."""
        poll, self._pending = self._pending, None
        if poll is None:
            return None
        futures, self._futures = self._futures, {}
        for tp, future in futures.items():
            poll.results[tp] = future.result()  # a decode bug surfaces on the runner thread
        return poll

    def close(self) -> None:
        """Drop what is pending and stop the threads."""
        self._pending = None
        for future in self._futures.values():
            future.cancel()
        self._futures = {}
        self._executor.shutdown(wait=True, cancel_futures=True)
