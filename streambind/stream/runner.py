"""The consumer loop: sensor topics in, windows embedded and published, offsets committed.

One consumer thread polls ``sensors.*``, decodes and validates every record (rejects go to
the dead-letter topic), feeds the per-partition :class:`Windower` and queues closed
windows. A worker thread assembles, featurizes and embeds batches of one modality and
hands them to the :class:`WindowSink`. The sink's futures report acknowledgement back to
the consumer thread, which releases the windows in the :class:`OffsetTracker` and commits
only what is covered, with the restart state (watermark, per-device emitted-through marks;
see :mod:`streambind.stream.restart`) so a replay rebuilds exactly the open windows. With
``delivery="exactly_once"`` each commit is a Kafka transaction holding the outputs too
(:mod:`streambind.stream.commit`); the worker publishes under a lock that the commit
takes, so no output falls between a transaction's flush and its commit.

Backpressure: closed windows not yet acknowledged are counted; at ``max_buffered_windows``
the consumer pauses its partitions (it keeps polling, so it stays in the group) and resumes
them below half of it. Lag per partition is exported as ``CONSUMER_LAG``.

Use :func:`run_stream` (blocking, e.g. from a Ray Serve replica) or :class:`StreamRunner`
(``start()`` in a thread, ``stop()``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind import metrics
from streambind.errors import RecordError, StreambindError
from streambind.stream.commit import Committer, TransactionRestarted
from streambind.stream.config import StreamConfig
from streambind.stream.embed import Embedder
from streambind.stream.offsets import OffsetTracker
from streambind.stream.partition import IdleClock, PartitionState
from streambind.stream.rebalance import RebalanceListener, export_lag, rewind, watch_topics
from streambind.stream.records import NS_PER_S, DecodeOptions, decode_record, dlq_headers
from streambind.stream.restart import load_side_topic, parse_state, pick_state, state_key
from streambind.stream.sinks import EmbeddingSink, WindowSink
from streambind.stream.windows import ClosedWindow, Windower, WindowKey
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
    first_poll_s: float | None = None  # perf_counter() before the poll with the first records


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
        self._idle_clock = IdleClock(clock)
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
        self._parts: dict[TopicPartition, PartitionState] = {}
        self._side_state: dict[bytes, dict] | None = None
        self._producer: KafkaProducer | None = None
        self._committer: Committer | None = None
        # Held by the worker while it publishes a batch, by exactly-once commits and while a
        # revocation is applied: no output of a dropped partition is published after that.
        self.publishing = threading.RLock()
        self.closing = False
        self.rebalances: queue.SimpleQueue = queue.SimpleQueue()  # from the rebalance listener
        self._rewind_on_return: set[TopicPartition] = set()
        self._last_offset: dict[TopicPartition, int] = {}
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._buffered = 0
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
        transactional_id = None
        if cfg.exactly_once:
            transactional_id = cfg.transactional_id or f"{cfg.group_id}-{uuid.uuid4().hex[:12]}"
        producer = self._producer = KafkaProducer(**cfg.producer_kwargs(transactional_id))
        committer = self._committer = Committer(cfg, producer)
        worker = EmbedWorker(self.embedder, self.sink, producer, self.model,
                             cfg.max_batch_windows, self._on_output,
                             publishing=self.publishing, is_live=self._is_live)
        try:
            committer.begin()
            worker.start()
            listener = RebalanceListener(self.rebalances, self)
            consumer.subscribe(sorted(self._modality_of), listener=listener)
            logger.info("consuming %s as group %s (%s)", sorted(self._modality_of), cfg.group_id,
                        cfg.delivery)
            while not self.stop_event.is_set():
                self._step(consumer, producer, worker)
            self._drain(consumer, worker)
        finally:
            worker.stop()
            self.closing = True
            committer.abort()  # exactly-once: whatever the last commit did not cover
            producer.close(timeout=10)
            consumer.close(autocommit=False)
        return self.stats

    # -- one iteration -----------------------------------------------------------------

    def _step(self, consumer: KafkaConsumer, producer: KafkaProducer, worker: EmbedWorker) -> None:
        self._apply_rebalance(consumer)
        self._drain_acks()
        if worker.error is not None:
            raise StreambindError(f"embed worker failed: {worker.error}") from worker.error
        self._backpressure(consumer)
        polled_s = time.perf_counter()
        batches = consumer.poll(timeout_ms=self.config.poll_timeout_ms)
        if batches and self.stats.first_poll_s is None:
            self.stats.first_poll_s = polled_s
        if self._paused or self._behind(consumer, batches):
            self._idle_clock.freeze()
        else:
            self._idle_clock.thaw()
        rewound = self._apply_rebalance(consumer)
        assigned = consumer.assignment()
        if assigned:
            self.ready.set()
        for tp, messages in batches.items():
            if tp not in assigned or tp in rewound:
                continue  # fetched before the rebalance: read again from the committed offset
            for msg in messages:
                self._handle(consumer, producer, worker, tp, msg)
        for part in list(self._parts.values()):
            self._dispatch(worker, part, part.windower.poll())
        now_s = time.monotonic()
        if now_s >= self._next_commit_s:
            self._apply_rebalance(consumer)
            self._commit(consumer)
            self._next_commit_s = now_s + self.config.commit_interval_s
        if now_s >= self._next_lag_s:
            export_lag(consumer, self._last_offset)
            watch_topics(consumer, self._modality_of)
            self._next_lag_s = now_s + self.config.lag_interval_s

    def _behind(self, consumer: KafkaConsumer, batches: dict) -> bool:
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

    def _part(self, consumer: KafkaConsumer, tp: TopicPartition) -> PartitionState:
        part = self._parts.get(tp)
        if part is None:
            wm, floors = None, {}
            doc = self._restart_doc(consumer, tp)
            try:
                wm = doc.get("wm")
                floors = {str(d): int(f) for d, f in doc.get("dev", {}).items()}
            except (ValueError, AttributeError, TypeError):
                logger.warning("ignoring unreadable restart state of %s", tp)
            spec = self.config.window_spec(self._modality_of[tp.topic])
            windower = Windower(spec, self._idle_clock, partition=tp.partition,
                                initial_watermark_ns=None if wm is None else int(wm))
            part = self._parts[tp] = PartitionState(tp, windower, OffsetTracker(), floors=floors)
        return part

    def _restart_doc(self, consumer: KafkaConsumer, tp: TopicPartition) -> dict:
        """The restart state stored with the committed offset (metadata or side topic)."""
        committed = consumer.committed(tp, metadata=True)
        doc = parse_state(committed.metadata if committed is not None else None)
        if doc or not self.config.state_topic:
            return doc
        if self._side_state is None:
            self._side_state = load_side_topic(self.config.consumer_kwargs(),
                                               self.config.state_topic, self.config.group_id)
        docs = self._side_state.get(state_key(self.config.group_id, tp), [])
        return pick_state(docs, None if committed is None else committed.offset,
                          exact=self.config.exactly_once)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop the state of revoked partitions; their records are replayed elsewhere."""
        for tp in partitions:
            if self._parts.pop(tp, None) is not None:
                logger.info("partition %s revoked", tp)
            if self._committer is not None:
                self._committer.forget(tp)
            self._last_offset.pop(tp, None)

    def _apply_rebalance(self, consumer: KafkaConsumer) -> set[TopicPartition]:
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
                change, partitions = self.rebalances.get_nowait()
            except queue.Empty:
                return rewound
            self._side_state = None  # re-read: another member may have written it
            if change == "revoked":
                with self.publishing:
                    if self.config.exactly_once and self._committer is not None:
                        self._committer.restart_transaction()
                        partitions = list(self._parts)
                    self.forget(partitions)
                kept = [tp for tp in partitions if tp in consumer.assignment()]
                self._rewind(consumer, kept)  # exactly once, with a cooperative assignor
                rewound.update(kept)
                self._rewind_on_return.update(set(partitions) - set(kept))
                continue
            assigned = consumer.assignment()  # a later rebalance may have moved some on
            fresh = [tp for tp in partitions
                     if tp in self._rewind_on_return and tp in assigned and tp not in self._parts]
            self._rewind(consumer, fresh)
            self._rewind_on_return.difference_update(fresh)
            rewound.update(fresh)

    def _rewind(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        rewind(consumer, partitions, self.config.auto_offset_reset)
        for tp in partitions:
            self._last_offset.pop(tp, None)

    def _is_live(self, part: object) -> bool:
        """Whether ``part`` is still assigned here (the worker drops outputs of revoked ones)."""
        return isinstance(part, PartitionState) and self._parts.get(part.tp) is part

    def _handle(self, consumer, producer, worker, tp: TopicPartition, msg) -> None:  # type: ignore[no-untyped-def]
        modality = self._modality_of[tp.topic]
        part = self._part(consumer, tp)
        tracker, windower = part.tracker, part.windower
        try:
            chunks = decode_record(modality, msg.key, msg.value, msg.headers,
                                   partition=tp.partition, offset=msg.offset,
                                   now_ns=time.time_ns(), options=self._options)
        except RecordError as err:
            self._dead_letter(producer, part, msg, modality, err)
            return
        holds: set[WindowKey] = set()
        part.devices.add(chunks[0].device_id)
        for chunk in chunks:
            holds.update(windower.add(chunk).keys)
        tracker.consumed(tp.partition, msg.offset, holds)
        outcome = "accepted" if holds else "late"
        if holds:
            self.stats.records_accepted += 1
        else:
            self.stats.records_late += 1
        metrics.RECORDS.labels(modality, outcome).inc()

    def _dead_letter(self, producer, part, msg, modality: str, err: RecordError) -> None:
        tp = part.tp
        logger.debug("dead-letter %s[%d]@%d: %s", tp.topic, tp.partition, msg.offset, err)
        token = part.tracker.hold(tp.partition, msg.offset, "dlq")
        future = producer.send(
            self.config.dlq_topic, key=msg.key, value=msg.value,
            headers=dlq_headers(msg.headers, err, tp.topic, tp.partition, msg.offset))
        future.add_callback(lambda _md: self._acks.put((part, token, False)))
        future.add_errback(lambda exc: self._acks.put((part, exc, False)))
        self.stats.records_dlq += 1
        metrics.RECORDS.labels(modality, "dlq").inc()
        metrics.DLQ.labels(modality, err.reason).inc()

    def _dispatch(
        self, worker: EmbedWorker, part: PartitionState, closed: list[ClosedWindow]
    ) -> None:
        for window in closed:
            logger.debug("closed %s by %s: %d chunks, coverage %.3f, first offset %d",
                         window.key, window.closed_by, len(window.chunks), window.coverage,
                         window.first_offset if window.chunks else -1)
            floor_ns = part.floors.get(window.device_id)
            if floor_ns is not None and window.end_ns <= floor_ns:
                # Emitted before a restart; the replay rebuilt it (perhaps partially).
                self._release(part, window.key)
                continue
            if window.outcome != "ok":
                metrics.WINDOWS.labels(window.modality, "low_coverage").inc()
                self.stats.windows_dropped += 1
                self._release(part, window.key)
                continue
            if window.gap_filled:
                metrics.WINDOWS.labels(window.modality, "gap_filled").inc()
            self._buffered += 1
            self.stats.windows_queued += 1
            self.stats.max_buffered = max(self.stats.max_buffered, self._buffered)
            worker.put(part, window)
        metrics.BUFFERED_WINDOWS.set(self._buffered)

    def _on_output(self, part: object, key: WindowKey | BaseException, counted: bool) -> None:
        """Called from any thread when a window's outputs are acknowledged (or failed)."""
        self._acks.put((part, key, counted))

    def _drain_acks(self) -> None:
        while True:
            try:
                part, hold, counted = self._acks.get_nowait()
            except queue.Empty:
                break
            if isinstance(hold, BaseException):
                raise StreambindError(f"publishing failed: {hold}") from hold
            if counted:
                self._buffered -= 1
            if self._parts.get(part.tp) is part:  # else: revoked since, state is gone
                self._release(part, hold)
        metrics.BUFFERED_WINDOWS.set(self._buffered)

    @staticmethod
    def _release(part: PartitionState, hold: object) -> None:
        part.tracker.released(hold)
        if isinstance(hold, WindowKey):
            last = part.released_end.get(hold.device_id)
            if last is None or hold.end_ns > last:
                part.released_end[hold.device_id] = hold.end_ns

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
        committer = self._committer
        if committer is None:
            return
        if not self.config.exactly_once:
            self.stats.commits += committer.commit(consumer, self._parts)
            return
        with self.publishing:
            if self._producer is not None:
                self._producer.flush()  # every output of this transaction acknowledged...
            self._drain_acks()  # ...and released, so the offsets committed with it cover it
            try:
                self.stats.commits += committer.commit(consumer, self._parts)
            except TransactionRestarted as exc:
                logger.warning("%s; replaying from the committed offsets", exc)
                kept = [tp for tp in self._parts if tp in consumer.assignment()]
                self.forget(list(self._parts))
                self._rewind(consumer, kept)  # (a poll's records are all handled by now)

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
