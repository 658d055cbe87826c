"""The consumer loop: sensor topics in, windows embedded and published, offsets committed.

One consumer thread polls ``sensors.*`` and runs one step at a time; each concern has its
own module:

* :mod:`~streambind.stream.assignment`: rebalances (queued by the listener on kafka-python's
  network thread) applied on this thread; partition state from restart state.
* :mod:`~streambind.stream.intake`: decoding and validation; rejects go to the dead-letter
  topic.
* :mod:`~streambind.stream.dispatch`: closed windows to the :class:`EmbedWorker` thread
  (assemble, featurize, embed, publish through the :class:`WindowSink`), acknowledgements
  back to the offset trackers.
* :mod:`~streambind.stream.backpressure`: pause while too much is buffered.
* :mod:`~streambind.stream.commit_loop`: commits of what is covered, with the restart state
  (see :mod:`streambind.stream.restart`), so a replay rebuilds exactly the open windows.
  With ``delivery="exactly_once"`` each commit is a Kafka transaction holding the outputs
  too (:mod:`streambind.stream.commit`); the worker publishes under a lock that the commit
  takes, so no output falls between a transaction's flush and its commit.
* :mod:`~streambind.stream.lag`: lag metrics, and whether the consumer is behind (then the
  idle clock stands still).

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

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind.errors import StreambindError
from streambind.stream.assignment import Assignments
from streambind.stream.backpressure import Backpressure
from streambind.stream.commit import Committer
from streambind.stream.commit_loop import CommitLoop
from streambind.stream.config import StreamConfig
from streambind.stream.dispatch import WindowDispatch
from streambind.stream.embed import Embedder
from streambind.stream.intake import RecordIntake
from streambind.stream.lag import LagMonitor
from streambind.stream.partition import IdleClock, PartitionState
from streambind.stream.pool import DecodedPoll, DecodePipeline
from streambind.stream.rebalance import RebalanceListener
from streambind.stream.restart import ensure_state_topic
from streambind.stream.sinks import EmbeddingSink, WindowSink
from streambind.stream.stats import RunnerStats
from streambind.stream.worker import EmbedWorker
from streambind.tuning import prefer_huge_page_tensors

logger = logging.getLogger(__name__)

__all__ = ["RunnerStats", "StreamRunner", "run_stream"]

SHORT_POLL_MS = 10  # poll timeout while acknowledgements, decoded records or a pause wait


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
        decode_threads: int = 1,
    ) -> None:
        prefer_huge_page_tensors()  # before the featurizers' first batch (see streambind.tuning)
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
        # Held by the worker while it publishes a batch, by exactly-once commits and while a
        # revocation is applied: no output of a dropped partition is published after that.
        self.publishing = threading.RLock()
        self.closing = False  # read by the RebalanceListener
        self.rebalances: queue.SimpleQueue = queue.SimpleQueue()  # from the rebalance listener
        self.lag = LagMonitor(config)
        self.assignments = Assignments(config, self._idle_clock, self.rebalances,
                                       self.publishing, on_forget=self.lag.forget)
        self.assignments.sink = self.sink
        self.dispatch = WindowDispatch(self.stats)
        self.decode_threads = decode_threads
        self._decoder: DecodePipeline | None = None
        self.backpressure = Backpressure(config, self.stats, open_bytes=self.open_bytes,
                                         queued_bytes=lambda: self.dispatch.queued_bytes,
                                         open_bytes_of=self._open_bytes_of, clock=clock)

    @property
    def _buffered(self) -> int:
        """Windows queued to the worker and not yet acknowledged."""
        return self.dispatch.buffered

    def open_bytes(self) -> int:
        """Payload bytes held in the open windows of the assigned partitions (0: every
        window that records opened is closed)."""
        return sum(part.windower.held_bytes for part in list(self.assignments.parts.values()))

    def _open_bytes_of(self, tp: TopicPartition) -> int:
        """Payload bytes held in the open windows of ``tp``."""
        part = self.assignments.parts.get(tp)
        return part.windower.held_bytes if part is not None else 0

    @property
    def _parts(self) -> dict[TopicPartition, PartitionState]:
        return self.assignments.parts

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
        ensure_state_topic(cfg)  # fail at start with a clear error, not at every commit
        consumer = KafkaConsumer(**cfg.consumer_kwargs())
        transactional_id = None
        if cfg.exactly_once:
            transactional_id = cfg.transactional_id or f"{cfg.group_id}-{uuid.uuid4().hex[:12]}"
        producer = KafkaProducer(**cfg.producer_kwargs(transactional_id))
        committer = Committer(cfg, producer)
        self.assignments.committer = committer
        commits = CommitLoop(cfg, committer, producer, self.assignments, self.publishing,
                             self._drain_acks, self.stats)
        intake = RecordIntake(cfg, producer, self.assignments, self.dispatch, self.stats)
        if self.decode_threads > 0:  # else every record is decoded on this thread
            self._decoder = DecodePipeline(intake.decode, self.decode_threads)
        worker = EmbedWorker(self.embedder, self.sink, producer, self.model,
                             cfg.max_batch_windows, self.dispatch.on_output,
                             publishing=self.publishing, is_live=self.assignments.is_live,
                             dead_letters=intake.dead_letters)
        try:
            committer.begin()
            worker.start()
            listener = RebalanceListener(self.rebalances, self)
            consumer.subscribe(sorted(self._modality_of), listener=listener)
            logger.info("consuming %s as group %s (%s)", sorted(self._modality_of), cfg.group_id,
                        cfg.delivery)
            while not self.stop_event.is_set():
                self._step(consumer, intake, worker, commits)
            self._drain(consumer, worker, commits)
        finally:
            if self._decoder is not None:
                self._decoder.close()  # what it held was never applied: it is read again
            worker.stop()
            self.closing = True
            committer.abort()  # exactly-once: whatever the last commit did not cover
            producer.close(timeout=10)
            consumer.close(autocommit=False)
        return self.stats

    # -- one iteration -----------------------------------------------------------------

    def _step(self, consumer: KafkaConsumer, intake: RecordIntake, worker: EmbedWorker,
              commits: CommitLoop) -> None:
        self.assignments.apply(consumer)
        self._drain_acks()
        if worker.error is not None:
            raise StreambindError(f"embed worker failed: {worker.error}") from worker.error
        self.backpressure.apply(consumer, self.dispatch.buffered)
        polled_s = time.perf_counter()
        batches = consumer.poll(timeout_ms=self._poll_timeout_ms())
        if batches and self.stats.first_poll_s is None:
            self.stats.first_poll_s = polled_s
        if self.backpressure.waits_for_open_windows:
            self._idle_clock.thaw()  # only closing open windows ends this pause (no deadlock)
        elif self.backpressure.paused or self.lag.behind(consumer, batches):
            self._idle_clock.freeze()
        else:
            self._idle_clock.thaw()
        rewound = self.assignments.apply(consumer)
        assigned = consumer.assignment()
        if assigned:
            self.ready.set()
        # Records fetched before a rebalance are read again from the committed offset.
        fresh = [(tp, msgs) for tp, msgs in batches.items()
                 if tp in assigned and tp not in rewound]
        if self._decoder is None:
            self.backpressure.feed(consumer, fresh, intake.handle)  # stops (and seeks back)
        else:  # at the byte bound: see _apply_decoded
            self._decoder.skip(rewound)
            ready = self._decoder.take()  # the previous poll, decoded during this one
            self._decoder.submit(fresh)
            if ready is not None:
                self._apply_decoded(consumer, intake, ready, assigned)
        for part in list(self.assignments.parts.values()):
            closed = part.windower.poll()
            self.backpressure.count_closed_at_bound(closed)
            self.dispatch.dispatch(worker, part, closed)
        if commits.due():
            rewound = self.assignments.apply(consumer)
            if self._decoder is not None:
                self._decoder.skip(rewound)
            commits.commit(consumer)
        self.lag.export(consumer, self._modality_of)

    def _poll_timeout_ms(self) -> int:
        """How long the next poll may wait for records. Short while something waits on this
        thread (the worker's acknowledgements, to commit and resume sooner; decoded records
        to apply; a pause to lift), else no longer than until the next device times out,
        so its last windows close on time rather than up to a whole poll late."""
        timeout_ms = self.config.poll_timeout_ms
        if (self.backpressure.paused or self.dispatch.buffered > 0
                or (self._decoder is not None and self._decoder.pending)):
            return min(timeout_ms, SHORT_POLL_MS)
        for part in list(self.assignments.parts.values()):
            idle_in_s = part.windower.idle_in_s()
            if idle_in_s is not None:  # +1 ms: poll() closes only past the timeout
                timeout_ms = min(timeout_ms, max(0, int(idle_in_s * 1000) + 1))
        return timeout_ms

    def _apply_decoded(self, consumer: KafkaConsumer, intake: RecordIntake, ready: DecodedPoll,
                       assigned: set[TopicPartition]) -> None:
        """Windows, offsets and dead letters of a poll decoded on the pool. When the byte
        bound stops the feed, the consumer is sent back on the partitions not fully handled,
        so the records of theirs decoding now (the next poll) are dropped."""
        live = ready.live(assigned)
        decoded = {tp: iter(ready.results[tp]) for tp, _ in live}

        def handle(c: KafkaConsumer, tp: TopicPartition, msg: object) -> None:
            intake.handle(c, tp, msg, next(decoded[tp]))

        handled = self.backpressure.feed(consumer, live, handle)
        if self._decoder is not None and handled < sum(len(m) for _, m in live):
            left, sent_back = handled, set()
            for tp, msgs in live:
                if left < len(msgs):
                    sent_back.add(tp)
                left = max(0, left - len(msgs))
            self._decoder.skip(sent_back)

    def _drain_acks(self) -> None:
        self.dispatch.drain_acks(self.assignments.parts)

    def _drain(self, consumer: KafkaConsumer, worker: EmbedWorker, commits: CommitLoop) -> None:
        """On stop: let queued windows finish and commit what they cover."""
        deadline = time.monotonic() + self.drain_timeout_s
        while self.dispatch.buffered > 0 and time.monotonic() < deadline and worker.error is None:
            self._drain_acks()
            time.sleep(0.01)
        self._drain_acks()
        commits.commit(consumer)


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
