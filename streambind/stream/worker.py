"""The embed worker: closed windows -> assembled -> featurized -> embedded -> published.

Runs in its own thread so the consumer keeps polling (and pausing) while the embedder works.
Batches hold windows of one modality, up to ``max_batch_windows``, in arrival order.

Dead letters (:mod:`~streambind.stream.dead_letter`): a frame that fails to decode when its
window selects it goes to the DLQ as its record (``bad_frame``; the window uses the nearest
good frame), and the records of a window that fails assembly or featurization go there with
``assembly_failed``/``featurize_failed``. They are written under the ``publishing`` lock
(exactly once: inside the open transaction), and the window is released (its offsets may
be committed) only once its outputs and its dead letters are all acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future as PoolFuture
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from kafka.future import Future

from streambind import metrics
from streambind.errors import StreambindError
from streambind.stream import dead_letter
from streambind.stream.assemble import AssemblyError, FrameFailure
from streambind.stream.dead_letter import DeadLetterWriter
from streambind.stream.embed import Embedder, featurize
from streambind.stream.prepare import prepare_batch
from streambind.stream.sinks import EmbeddedWindow, WindowSink, all_of
from streambind.stream.windows import ClosedWindow, WindowKey
from streambind.units import NS_PER_S

logger = logging.getLogger(__name__)

OutputCallback = Callable[[Hashable, "WindowKey | BaseException", bool], None]


class OutputFailed(StreambindError):
    """A window's outputs (events, embeddings, dead letters) could not be written; ``key``
    names the window, ``__cause__`` is the producer's error."""

    def __init__(self, key: WindowKey, cause: BaseException) -> None:
        super().__init__(f"{key}: {cause!r}")
        self.key = key
        self.__cause__ = cause


class EmbedWorker:
    """A thread that embeds queued windows and publishes them through a sink."""

    def __init__(
        self,
        embedder: Embedder,
        sink: WindowSink,
        producer: Any,
        model: str,
        max_batch_windows: int,
        on_output: OutputCallback,
        *,
        publishing: AbstractContextManager[Any] | None = None,
        is_live: Callable[[Hashable], bool] | None = None,
        dead_letters: DeadLetterWriter | None = None,
        prepare_ahead: bool = True,
    ) -> None:
        self.embedder = embedder
        self.sink = sink
        self.producer = producer
        self.model = model
        self.max_batch_windows = max_batch_windows
        self.on_output = on_output
        # Held while a batch is published; exactly-once commits and revocations take it.
        self.publishing = publishing if publishing is not None else threading.Lock()
        self.is_live = is_live
        self.dead_letters = dead_letters  # None: failures are only counted and logged
        self.prepare_ahead = prepare_ahead
        self.error: BaseException | None = None
        self._queue: deque[tuple[Hashable, ClosedWindow]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="streambind-embed", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current batch (queued windows are abandoned; they are replayed)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def put(self, topic: Hashable, window: ClosedWindow) -> None:
        """Queue a closed window; ``topic`` is an opaque tag handed back to ``on_output``."""
        with self._cond:
            self._queue.append((topic, window))
            self._cond.notify()

    def _take(self, block: bool = True) -> list[tuple[Hashable, ClosedWindow]] | None:
        with self._cond:
            while block and not self._queue and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping or not self._queue:
                return None
            modality = self._queue[0][1].modality
            batch: list[tuple[Hashable, ClosedWindow]] = []
            rest: deque[tuple[Hashable, ClosedWindow]] = deque()
            while self._queue and len(batch) < self.max_batch_windows:
                item = self._queue.popleft()
                (batch if item[1].modality == modality else rest).append(item)
            rest.extend(self._queue)
            self._queue = rest
            return batch

    def _loop(self) -> None:
        # Two stages: the next batch is assembled and featurized on the featurize thread
        # while this one embeds and publishes the current one (batches are emitted in order,
        # so each device's windows are published in order). A second featurize thread was
        # measured slower: both stages share one interpreter.
        pool = ThreadPoolExecutor(1, thread_name_prefix="streambind-featurize")
        ahead: tuple[list[tuple[Hashable, ClosedWindow]], PoolFuture] | None = None
        batch: list[tuple[Hashable, ClosedWindow]] | None = None
        try:
            while True:
                if ahead is None:
                    nxt = self._take()
                    if nxt is None:
                        return  # stopping
                    ahead = (nxt, pool.submit(self._prepare, nxt))
                if self._stopping:
                    return  # what is queued or prepared is abandoned: it is replayed
                (batch, future), ahead = ahead, None
                if self.prepare_ahead:  # prepare the next batch while this one is emitted
                    nxt = self._take(block=False)
                    if nxt is not None:
                        ahead = (nxt, pool.submit(self._prepare, nxt))
                prepared = future.result()
                if prepared is not None:
                    self._emit(*prepared)
        except BaseException as exc:  # noqa: BLE001 - reported to the consumer thread
            modality = batch[0][1].modality if batch else "?"
            logger.exception("embedding a %s batch failed", modality)
            self.error = exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # nothing featurizes after stop

    def _fail(self, topic: Hashable, window: ClosedWindow, exc: Exception,
              failures: tuple[FrameFailure, ...] = ()) -> None:
        """A window that cannot be embedded: its records go to the DLQ, then it is released.

        ``exc``: an :class:`AssemblyError` (reason ``assembly_failed``) or a
        ``FeatureError`` of featurization (``featurize_failed``); ``failures``: the frames
        that did not decode on the way. The records of failed frames are ``bad_frame``;
        every other record of the window gets the window's reason.
        """
        logger.warning("window %s failed: %s", window.key, exc)
        metrics.WINDOWS.labels(window.modality, "failed").inc()
        reason = (dead_letter.ASSEMBLY_FAILED if isinstance(exc, AssemblyError)
                  else dead_letter.FEATURIZE_FAILED)
        with self.publishing:
            if self.dead_letters is None or (self.is_live is not None
                                             and not self.is_live(topic)):
                futures = []  # revoked meanwhile: the new owner replays (and dead-letters) it
            else:
                futures = self._dead_letter_frames(topic, window, failures)
                bad = {id(f.chunk.source) for f in failures}
                rest = [c for c in window.chunks if id(c.source) not in bad]
                err = dead_letter.window_error(
                    reason, exc, f"window [{window.start_ns}, {window.end_ns}): ")
                sent = self.dead_letters.send_chunks(topic, rest, err)
                dead_letter.count(window.modality, reason, len(sent))
                futures.extend(sent)
        self._release_after(topic, window.key, futures)

    def _dead_letter_frames(self, topic: Hashable, window: ClosedWindow,
                            failures: tuple[FrameFailure, ...]) -> list[Future]:
        """Dead letters of the records of frames that did not decode (``bad_frame``), each
        record once; call under ``publishing``. Returns the futures of the writes."""
        if self.dead_letters is None or not failures:
            return []
        futures: list[Future] = []
        for failure in failures:
            err = dead_letter.frame_error(failure.error)
            futures.extend(self.dead_letters.send_chunks(topic, [failure.chunk], err))
        dead_letter.count(window.modality, dead_letter.BAD_FRAME, len(futures))
        return futures

    def _release_after(self, topic: Hashable, key: WindowKey, futures: list[Future]) -> None:
        """Release window ``key`` once every one of ``futures`` is acknowledged."""
        if not futures:
            self.on_output(topic, key, True)
            return
        done = all_of(futures)
        done.add_callback(lambda _value: self.on_output(topic, key, True))
        done.add_errback(self._failed, topic, key)

    def _prepare(self, batch: list[tuple[Hashable, ClosedWindow]]) -> _Ready | None:
        """Assemble and featurize ``batch``: the windows kept, the frames that did not
        decode in each, and the batch tensor; None when every window failed (each one
        through ``_fail``)."""
        modality = batch[0][1].modality
        # featurize is looked up here (not bound at import), so tests can watch it
        prepared = prepare_batch(modality, [window for _, window in batch], featurize)
        good: list[tuple[Hashable, ClosedWindow]] = []
        failures: list[tuple[FrameFailure, ...]] = []
        for item, error, frame_failures in zip(batch, prepared.errors, prepared.failures,
                                               strict=True):
            if error is None:
                good.append(item)
                failures.append(frame_failures)
            else:
                self._fail(item[0], item[1], error, frame_failures)
        if not good:
            return None
        return modality, good, failures, prepared.tensor

    def _emit(self, modality: str, good: list[tuple[Hashable, ClosedWindow]],
              failures: list[tuple[FrameFailure, ...]], tensor: Any) -> None:
        """Embed a prepared batch and publish it through the sink."""
        started_s = time.perf_counter()
        embeddings = self.embedder.embed(modality, tensor)
        # The request as the ingest side sees it; the embedder's forward pass is
        # streambind_embed_seconds, observed in the embedder process.
        metrics.EMBED_REQUEST_SECONDS.labels(modality).observe(time.perf_counter() - started_s)
        metrics.EMBED_REQUEST_WINDOWS.labels(modality).observe(len(good))
        emb = embeddings.detach().to("cpu").float().numpy()
        with self.publishing:
            # A window whose partition was revoked meanwhile is the new owner's to emit.
            live = []
            for i, (topic, window) in enumerate(good):
                if self.is_live is None or self.is_live(topic):
                    live.append(i)
                else:
                    self.on_output(topic, window.key, True)  # done here; not published
            items = [EmbeddedWindow(good[i][1], emb[i], self.model) for i in live]
            futures = self.sink.publish(self.producer, items) if items else []
            # Frames that did not decode (the window used a neighbour): their records.
            letters = [self._dead_letter_frames(good[i][0], good[i][1], failures[i])
                       for i in live]
        for i, future, extra in zip(live, futures, letters, strict=True):
            topic, window = good[i]
            if extra:
                future = all_of([future, *extra])
            future.add_callback(self._done, topic, window)
            future.add_errback(self._failed, topic, window.key)

    def _done(self, topic: Hashable, window: ClosedWindow, _value: object) -> None:
        # Events are counted by the sink as each is acknowledged; this is the window.
        metrics.WINDOWS.labels(window.modality, "emitted").inc()
        latency_s = (time.time_ns() - window.end_ns) / NS_PER_S
        if latency_s >= 0:
            metrics.LATENCY_SECONDS.labels(window.modality).observe(latency_s)
        self.on_output(topic, window.key, True)

    def _failed(self, topic: Hashable, key: WindowKey, exc: BaseException) -> None:
        self.on_output(topic, OutputFailed(key, exc), True)


_Ready = tuple[str, list[tuple[Hashable, ClosedWindow]], list[tuple[FrameFailure, ...]], Any]
