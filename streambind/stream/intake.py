"""Record intake: decode and validate each polled record, feed its partition's windower,
and send rejects to the dead-letter topic.

A reject never stops the loop: it is written to ``dlq_topic`` with the original key, value
and headers plus the error headers (:mod:`~streambind.stream.dead_letter`), and
its offset is held in the partition's tracker until the broker acknowledges the write, so
a commit never passes a dead letter that could still be lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streambind import metrics
from streambind.errors import RecordError
from streambind.stream.assignment import Assignments
from streambind.stream.chunks import SensorChunk
from streambind.stream.config import StreamConfig
from streambind.stream.dead_letter import DeadLetterWriter
from streambind.stream.dispatch import WindowDispatch
from streambind.stream.partition import PartitionState
from streambind.stream.records import DecodeOptions, decode_record
from streambind.stream.stats import RunnerStats
from streambind.stream.windows import WindowKey
from streambind.units import NS_PER_S

logger = logging.getLogger(__name__)


class RecordIntake:
    """Turns polled records into windower input or dead letters (runner thread)."""

    def __init__(
        self,
        config: StreamConfig,
        producer: Any,
        assignments: Assignments,
        dispatch: WindowDispatch,
        stats: RunnerStats,
        dead_letters: DeadLetterWriter | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.dead_letters = dead_letters or DeadLetterWriter(
            config.dlq_topic, producer,
            max_request_bytes=config.producer_kwargs().get("max_request_size"))
        self.assignments = assignments
        self.dispatch = dispatch
        self.stats = stats
        self._modality_of = config.modality_of()
        self._counters: dict[tuple[str, str], Any] = {}
        self.options = DecodeOptions(
            max_future_ns=round(config.max_future_s * NS_PER_S),
            frame_interval_ns=config.frame_interval_ms * 1_000_000,
        )

    def decode(self, tp: TopicPartition, msg: Any) -> list[SensorChunk] | RecordError:
        """Decode ``msg`` of ``tp`` (pure: safe on any thread); a reject is returned."""
        try:
            return decode_record(self._modality_of[tp.topic], msg.key, msg.value, msg.headers,
                                 partition=tp.partition, offset=msg.offset,
                                 now_ns=time.time_ns(), options=self.options, topic=tp.topic)
        except RecordError as err:
            return err

    def handle(self, consumer: KafkaConsumer, tp: TopicPartition, msg: Any,
               decoded: list[SensorChunk] | RecordError | None = None) -> None:
        """Put ``msg`` (a kafka-python ConsumerRecord of ``tp``) into its windows, or into
        the DLQ; ``decoded``: its :meth:`decode` result when already decoded elsewhere."""
        modality = self._modality_of[tp.topic]
        part = self.assignments.part(consumer, tp)
        tracker, windower = part.tracker, part.windower
        chunks = self.decode(tp, msg) if decoded is None else decoded
        if isinstance(chunks, RecordError):
            self.dead_letter(part, msg, modality, chunks)
            return
        holds: set[WindowKey] = set()
        late = False
        for chunk in chunks:
            result = windower.add(chunk)
            holds.update(result.keys)
            late = late or result.late
        tracker.consumed(tp.partition, msg.offset, holds)
        # Not late: duplicates, and records of windows emitted before a restart (replayed).
        outcome = "accepted" if holds else "late" if late else "replayed"
        if holds:
            self.stats.records_accepted += 1
        elif late:
            self.stats.records_late += 1
        counter = self._counters.get((modality, outcome))
        if counter is None:  # labels() costs a lookup and a lock per call: once per pair
            counter = self._counters[(modality, outcome)] = metrics.RECORDS.labels(modality,
                                                                                   outcome)
        counter.inc()

    def dead_letter(self, part: PartitionState, msg: Any, modality: str, err: RecordError) -> None:
        """Write ``msg`` to the DLQ with ``err``; its offset is held until acknowledged."""
        tp = part.tp
        token = part.tracker.hold(tp.partition, msg.offset, "dlq")
        future = self.dead_letters.send(msg.key, msg.value, msg.headers, err, tp.topic,
                                        tp.partition, msg.offset)
        future.add_callback(lambda _md: self.dispatch.on_output(part, token, False))
        future.add_errback(lambda exc: self.dispatch.on_output(part, exc, False))
        self.stats.records_dlq += 1
        metrics.RECORDS.labels(modality, "dlq").inc()
        metrics.DLQ.labels(modality, err.reason).inc()
