"""The consumer loop: sensor topics in, windows embedded and published, offsets committed.

One consumer thread polls ``sensors.*``, decodes and validates every record (rejects go to
the dead-letter topic), feeds the per-partition :class:`Windower` and queues closed
windows. A worker thread assembles, featurizes and embeds batches of one modality and
hands them to the :class:`WindowSink`. The sink's futures report acknowledgement back to
the consumer thread, which releases the windows in the :class:`OffsetTracker` and commits
(with the restart watermark as commit metadata) only what is covered.

Backpressure: closed windows not yet acknowledged are counted; at ``max_buffered_windows``
the consumer pauses its partitions (it keeps polling, so it stays in the group) and resumes
them below half of it. Lag per partition is exported as ``CONSUMER_LAG``.

Use :func:`run_stream` (blocking, e.g. from a Ray Serve replica) or :class:`StreamRunner`
(``start()`` in a thread, ``stop()``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streambind import metrics
from streambind.errors import RecordError, StreambindError
from streambind.stream.config import StreamConfig
from streambind.stream.embed import Embedder
from streambind.stream.offsets import OffsetTracker
from streambind.stream.records import NS_PER_S, DecodeOptions, decode_record, dlq_headers
from streambind.stream.sinks import EmbeddingSink, WindowSink
from streambind.stream.windows import ClosedWindow, Windower, WindowKey, restart_watermark_ns
from streambind.stream.worker import EmbedWorker

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RunnerStats:
    """Counters of one runner (also exported as Prometheus metrics)."""

    records_accepted: int = 0
    records_dlq: int = 0
    records_late: int = 0
    windows_queued: int = 0
    windows_dropped: int = 0
    max_buffered: int = 0
    pauses: int = 0
    commits: int = 0


class StreamRunner:
    """The streaming core around one consumer group member. See the module docstring."""

    def __init__(
        self,
        config: StreamConfig,
        embedder: Embedder,
        sink: WindowSink | None = None,
        *,
        model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain_timeout_s: float = 30.0,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.sink = sink if sink is not None else EmbeddingSink(config)
        self.model = model or config.model
        self.clock = clock
        self.drain_timeout_s = drain_timeout_s
        self.stats = RunnerStats()
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._modality_of = config.modality_of()
        self._options = DecodeOptions(
            max_future_ns=round(config.max_future_s * NS_PER_S),
            frame_interval_ns=config.frame_interval_ms * 1_000_000,
        )
        self._windowers: dict[TopicPartition, Windower] = {}
        self._trackers: dict[str, OffsetTracker] = {}
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._buffered = 0
        self._committed: dict[TopicPartition, tuple[int, str]] = {}
        self._paused = False
        self._next_commit_s = 0.0
        self._next_lag_s = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> StreamRunner:
        """Run the loop in a daemon thread; returns immediately."""
        self._thread = threading.Thread(target=self._run_safely, name="streambind-runner",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Ask the loop to stop, wait for it, and re-raise an error it died of."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.error is not None:
            raise StreambindError(f"stream runner failed: {self.error}") from self.error

    def _run_safely(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - reported through stop()
            logger.exception("stream runner failed")
            self.error = exc

    def run(self) -> RunnerStats:
        """Run the loop in the calling thread until ``stop_event`` is set; returns the stats."""
        cfg = self.config
        consumer = KafkaConsumer(**cfg.consumer_kwargs())
        producer = KafkaProducer(**cfg.producer_kwargs())
        worker = EmbedWorker(self.embedder, self.sink, producer, self.model,
                             cfg.max_batch_windows, self._on_output)
        worker.start()
        try:
            consumer.subscribe(sorted(self._modality_of))
            logger.info("consuming %s as group %s", sorted(self._modality_of), cfg.group_id)
            while not self.stop_event.is_set():
                self._step(consumer, producer, worker)
            self._drain(consumer, worker)
        finally:
            worker.stop()
            producer.close(timeout=10)
            consumer.close(autocommit=False)
        return self.stats

    # -- one iteration -----------------------------------------------------------------

    def _step(self, consumer: KafkaConsumer, producer: KafkaProducer, worker: EmbedWorker) -> None:
        self._drain_acks()
        if worker.error is not None:
            raise StreambindError(f"embed worker failed: {worker.error}") from worker.error
        self._backpressure(consumer)
        batches = consumer.poll(timeout_ms=self.config.poll_timeout_ms)
        if consumer.assignment():
            self.ready.set()
        for tp, messages in batches.items():
            for msg in messages:
                self._handle(consumer, producer, worker, tp, msg)
        for tp, windower in list(self._windowers.items()):
            self._dispatch(worker, tp, windower.poll())
        now_s = time.monotonic()
        if now_s >= self._next_commit_s:
            self._commit(consumer)
            self._next_commit_s = now_s + self.config.commit_interval_s
        if now_s >= self._next_lag_s:
            self._export_lag(consumer)
            self._next_lag_s = now_s + self.config.lag_interval_s

    def _windower(self, consumer: KafkaConsumer, tp: TopicPartition) -> Windower:
        windower = self._windowers.get(tp)
        if windower is None:
            wm = None
            committed = consumer.committed(tp, metadata=True)
            if committed is not None and committed.metadata:
                try:
                    wm = json.loads(committed.metadata).get("wm")
                except ValueError:
                    logger.warning("ignoring unreadable commit metadata on %s", tp)
            spec = self.config.window_spec(self._modality_of[tp.topic])
            windower = Windower(spec, self.clock, partition=tp.partition,
                                initial_watermark_ns=None if wm is None else int(wm))
            self._windowers[tp] = windower
            self._trackers.setdefault(tp.topic, OffsetTracker())
        return windower

    def _handle(self, consumer, producer, worker, tp: TopicPartition, msg) -> None:  # type: ignore[no-untyped-def]
        modality = self._modality_of[tp.topic]
        windower = self._windower(consumer, tp)
        tracker = self._trackers[tp.topic]
        try:
            chunks = decode_record(modality, msg.key, msg.value, msg.headers,
                                   partition=tp.partition, offset=msg.offset,
                                   now_ns=time.time_ns(), options=self._options)
        except RecordError as err:
            self._dead_letter(producer, tracker, tp, msg, modality, err)
            return
        holds: set[WindowKey] = set()
        for chunk in chunks:
            holds.update(windower.add(chunk).keys)
        tracker.consumed(tp.partition, msg.offset, holds)
        outcome = "accepted" if holds else "late"
        if holds:
            self.stats.records_accepted += 1
        else:
            self.stats.records_late += 1
        metrics.RECORDS.labels(modality, outcome).inc()

    def _dead_letter(self, producer, tracker, tp, msg, modality: str, err: RecordError) -> None:
        logger.debug("dead-letter %s[%d]@%d: %s", tp.topic, tp.partition, msg.offset, err)
        token = tracker.hold(tp.partition, msg.offset, "dlq")
        future = producer.send(
            self.config.dlq_topic, key=msg.key, value=msg.value,
            headers=dlq_headers(msg.headers, err, tp.topic, tp.partition, msg.offset))
        future.add_callback(lambda _md: self._acks.put((tp.topic, token, False)))
        future.add_errback(lambda exc: self._acks.put((tp.topic, exc, False)))
        self.stats.records_dlq += 1
        metrics.RECORDS.labels(modality, "dlq").inc()
        metrics.DLQ.labels(modality, err.reason).inc()

    def _dispatch(
        self, worker: EmbedWorker, tp: TopicPartition, closed: list[ClosedWindow]
    ) -> None:
        tracker = self._trackers[tp.topic]
        for window in closed:
            if window.outcome != "ok":
                metrics.WINDOWS.labels(window.modality, "low_coverage").inc()
                self.stats.windows_dropped += 1
                tracker.released(window.key)
                continue
            if window.gap_filled:
                metrics.WINDOWS.labels(window.modality, "gap_filled").inc()
            self._buffered += 1
            self.stats.windows_queued += 1
            self.stats.max_buffered = max(self.stats.max_buffered, self._buffered)
            worker.put(tp.topic, window)
        metrics.BUFFERED_WINDOWS.set(self._buffered)

    def _on_output(self, topic: str, key: WindowKey | BaseException, counted: bool) -> None:
        """Called from any thread when a window's outputs are acknowledged (or failed)."""
        self._acks.put((topic, key, counted))

    def _drain_acks(self) -> None:
        while True:
            try:
                topic, hold, counted = self._acks.get_nowait()
            except queue.Empty:
                break
            if isinstance(hold, BaseException):
                raise StreambindError(f"publishing failed: {hold}") from hold
            if counted:
                self._buffered -= 1
            tracker = self._trackers.get(topic)
            if tracker is not None:
                tracker.released(hold)
        metrics.BUFFERED_WINDOWS.set(self._buffered)

    # -- backpressure, commits, lag ----------------------------------------------------

    def _backpressure(self, consumer: KafkaConsumer) -> None:
        limit = self.config.max_buffered_windows
        assigned = consumer.assignment()
        if self._buffered >= limit and assigned:
            if not self._paused:
                self.stats.pauses += 1
                logger.info("pausing %d partitions: %d windows buffered", len(assigned),
                            self._buffered)
            consumer.pause(*assigned)  # also covers partitions assigned since
            self._paused = True
        elif self._paused and self._buffered <= limit // 2:
            consumer.resume(*consumer.paused())
            self._paused = False
        metrics.PAUSED_PARTITIONS.set(len(consumer.paused()))

    def _commit(self, consumer: KafkaConsumer) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        assigned = consumer.assignment()
        for tp, windower in list(self._windowers.items()):
            if tp not in assigned:
                self._windowers.pop(tp, None)
                self._trackers[tp.topic].forget_partition(tp.partition)
                continue
            tracker = self._trackers[tp.topic]
            offset = tracker.committable().get(tp.partition)
            if offset is None:
                continue
            keys = [h for h in tracker.unreleased(tp.partition) if isinstance(h, WindowKey)]
            wm = restart_watermark_ns(windower.watermark_ns, keys)
            meta = json.dumps({"wm": wm})
            if self._committed.get(tp) != (offset, meta):
                offsets[tp] = OffsetAndMetadata(offset, meta, -1)
        if not offsets:
            return
        consumer.commit(offsets)
        self.stats.commits += 1
        for tp, om in offsets.items():
            self._committed[tp] = (om.offset, om.metadata)

    def _export_lag(self, consumer: KafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            return
        ends = consumer.end_offsets(assigned)
        for tp in assigned:
            try:
                position = consumer.position(tp)
            except Exception:  # noqa: BLE001 - no position yet; try next time
                continue
            lag = max(0, ends.get(tp, position) - position)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def _drain(self, consumer: KafkaConsumer, worker: EmbedWorker) -> None:
        """On stop: let queued windows finish and commit what they cover."""
        deadline = time.monotonic() + self.drain_timeout_s
        while self._buffered > 0 and time.monotonic() < deadline and worker.error is None:
            self._drain_acks()
            time.sleep(0.01)
        self._drain_acks()
        self._commit(consumer)


def run_stream(
    config: StreamConfig,
    embedder: Embedder,
    sink: WindowSink | None = None,
    stop_event: threading.Event | None = None,
    **kwargs: object,
) -> RunnerStats:
    """Run the streaming core in the calling thread until ``stop_event`` is set.

    The entry point for a Ray Serve replica or a CLI: pass the embedder (model, Ray handle
    wrapper, or a stand-in), optionally a sink, and an event to stop it.
    """
    runner = StreamRunner(config, embedder, sink, **kwargs)  # type: ignore[arg-type]
    if stop_event is not None:
        runner.stop_event = stop_event
    return runner.run()
