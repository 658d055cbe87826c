"""The embed worker: closed windows -> assembled -> featurized -> embedded -> published.

Runs in its own thread so the consumer keeps polling (and pausing) while the embedder works.
Batches hold windows of one modality, up to ``max_batch_windows``, in arrival order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any

from streambind import metrics
from streambind.errors import FeatureError
from streambind.stream.assemble import AssemblyError, MixedSampleRateError, RawInput, assemble
from streambind.stream.embed import Embedder, featurize
from streambind.stream.sinks import EmbeddedWindow, WindowSink
from streambind.stream.windows import NS_PER_S, ClosedWindow, WindowKey

logger = logging.getLogger(__name__)

OutputCallback = Callable[[Hashable, "WindowKey | BaseException", bool], None]


def assemble_window(window: ClosedWindow) -> RawInput:
    """Assemble a window; a window mixing sample rates is put on its first chunk's rate."""
    try:
        return assemble(window)
    except MixedSampleRateError:
        return assemble(window, resample_to_hz=window.chunks[0].sample_rate)


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

    def _take(self) -> list[tuple[Hashable, ClosedWindow]] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping:
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
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._process(batch)
            except BaseException as exc:  # noqa: BLE001 - reported to the consumer thread
                logger.exception("embedding a %s batch failed", batch[0][1].modality)
                self.error = exc
                return

    def _fail(self, topic: Hashable, window: ClosedWindow, exc: Exception) -> None:
        logger.warning("window %s failed: %s", window.key, exc)
        metrics.WINDOWS.labels(window.modality, "failed").inc()
        self.on_output(topic, window.key, True)

    def _process(self, batch: list[tuple[Hashable, ClosedWindow]]) -> None:
        modality = batch[0][1].modality
        good: list[tuple[Hashable, ClosedWindow]] = []
        raws: list[RawInput] = []
        for topic, window in batch:
            try:
                raws.append(assemble_window(window))
                good.append((topic, window))
            except (AssemblyError, FeatureError) as exc:
                self._fail(topic, window, exc)
        if not good:
            return
        try:
            tensor = featurize(modality, raws)
        except FeatureError:
            # Find the bad window(s): featurize one by one, keep the rest.
            kept, kept_raws = [], []
            for item, raw in zip(good, raws, strict=True):
                try:
                    featurize(modality, [raw])
                    kept.append(item)
                    kept_raws.append(raw)
                except FeatureError as exc:
                    self._fail(item[0], item[1], exc)
            if not kept:
                return
            good, tensor = kept, featurize(modality, kept_raws)
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
        for i, future in zip(live, futures, strict=True):
            topic, window = good[i]
            future.add_callback(self._done, topic, window)
            future.add_errback(self._failed, topic)

    def _done(self, topic: Hashable, window: ClosedWindow, _value: object) -> None:
        # Events are counted by the sink as each is acknowledged; this is the window.
        metrics.WINDOWS.labels(window.modality, "emitted").inc()
        latency_s = (time.time_ns() - window.end_ns) / NS_PER_S
        if latency_s >= 0:
            metrics.LATENCY_SECONDS.labels(window.modality).observe(latency_s)
        self.on_output(topic, window.key, True)

    def _failed(self, topic: Hashable, exc: BaseException) -> None:
        self.on_output(topic, exc, True)
