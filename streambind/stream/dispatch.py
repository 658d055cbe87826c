"""Closed windows to the embed worker, and acknowledgements back to the offset trackers.

The worker and the producer's callbacks report from their own threads through
:meth:`WindowDispatch.on_output` (a queue); the runner thread drains the queue
(:meth:`WindowDispatch.drain_acks`) and releases the holds, so the trackers have one caller.
``buffered`` counts the windows queued to the worker and not yet acknowledged, and
``queued_bytes`` their payload bytes (the measures that backpressure acts on).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping

from kafka import TopicPartition

from streambind import metrics
from streambind.errors import StreambindError
from streambind.stream.partition import PartitionState
from streambind.stream.stats import RunnerStats
from streambind.stream.window_buffer import chunk_nbytes
from streambind.stream.windows import ClosedWindow, WindowKey
from streambind.stream.worker import EmbedWorker

logger = logging.getLogger(__name__)


class WindowDispatch:
    """Queues closed windows to the worker and releases what was acknowledged."""

    def __init__(self, stats: RunnerStats) -> None:
        self.stats = stats
        self.buffered = 0
        self.queued_bytes = 0
        self._bytes: dict[tuple[int, WindowKey], int] = {}  # (id(part), key) -> bytes queued
        self._acks: queue.SimpleQueue = queue.SimpleQueue()

    def dispatch(self, worker: EmbedWorker, part: PartitionState,
                 closed: list[ClosedWindow]) -> None:
        """Queue ``closed`` windows of ``part``; drop (and release) those not to embed."""
        for window in closed:
            logger.debug("closed %s by %s: %d chunks, coverage %.3f, first offset %d",
                         window.key, window.closed_by, len(window.chunks), window.coverage,
                         window.first_offset if window.chunks else -1)
            # (No "emitted before a restart" check here: the windower never opens a window
            # ending at or below a device's restored emitted-through end, except one to
            # rebuild because its outputs were not acknowledged, which must be emitted.)
            if window.over_budget:
                metrics.OVER_BUDGET_CHUNKS.labels(window.modality).inc(window.over_budget)
            if window.outcome != "ok":
                metrics.WINDOWS.labels(window.modality, "low_coverage").inc()
                self.stats.windows_dropped += 1
                self.release(part, window.key)
                continue
            if window.gap_filled:
                metrics.WINDOWS.labels(window.modality, "gap_filled").inc()
            self.buffered += 1
            nbytes = sum(chunk_nbytes(c) for c in window.chunks)
            where = (id(part), window.key)
            self._bytes[where] = self._bytes.get(where, 0) + nbytes
            self.queued_bytes += nbytes
            self.stats.windows_queued += 1
            self.stats.max_buffered = max(self.stats.max_buffered, self.buffered)
            worker.put(part, window)
        metrics.BUFFERED_WINDOWS.set(self.buffered)

    def on_output(self, part: object, key: WindowKey | object, counted: bool) -> None:
        """Called from any thread when a hold's outputs are acknowledged (or failed: then
        ``key`` is the exception). ``counted``: the hold is a window counted in ``buffered``."""
        self._acks.put((part, key, counted))

    def drain_acks(self, parts: Mapping[TopicPartition, PartitionState]) -> None:
        """Release every acknowledged hold; raise on a failed output write of a partition
        still assigned (one revoked since is the new owner's to replay)."""
        while True:
            try:
                part, hold, counted = self._acks.get_nowait()
            except queue.Empty:
                break
            if isinstance(hold, BaseException):
                if parts.get(part.tp) is part:
                    raise StreambindError(f"publishing failed: {hold}") from hold
                # Revoked since (exactly once: its open transaction was aborted, which fails
                # the writes in flight): the new owner replays these records.
                logger.info("an output of revoked partition %s failed (%r): replayed by its "
                            "new owner", part.tp, hold.__cause__ or hold)
                if not counted:
                    continue
                hold = getattr(hold, "key", None)
            if counted:
                self.buffered -= 1
                self.queued_bytes -= self._bytes.pop((id(part), hold), 0)
            if parts.get(part.tp) is part:  # else: revoked since, state is gone
                self.release(part, hold)
        metrics.BUFFERED_WINDOWS.set(self.buffered)

    @staticmethod
    def release(part: PartitionState, hold: object) -> None:
        """Release ``hold`` in ``part``'s tracker and note the device's released end."""
        part.tracker.released(hold)
        if isinstance(hold, WindowKey):
            last = part.released_end.get(hold.device_id)
            if last is None or hold.end_ns > last:
                part.released_end[hold.device_id] = hold.end_ns
