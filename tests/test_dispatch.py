"""WindowDispatch after a restart: a window rebuilt from the restart state (closed before the
restart but not acknowledged, so ending at or below the device's emitted-through end) is
queued and emitted; windows emitted before the restart never reach dispatch at all."""

from __future__ import annotations

import numpy as np
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, TransactionAbortedError

from streambind.errors import StreambindError
from streambind.stream.chunks import SensorChunk
from streambind.stream.dispatch import WindowDispatch
from streambind.stream.partition import PartitionState
from streambind.stream.restart import encode_doc
from streambind.stream.stats import RunnerStats
from streambind.stream.windows import DeviceRestart, WindowSpec
from streambind.stream.worker import OutputFailed

MS = 1_000_000


class Queue:
    """What the dispatcher hands windows to (the worker's ``put``)."""

    def __init__(self) -> None:
        self.windows: list = []

    def put(self, part, window) -> None:  # noqa: ANN001
        self.windows.append(window)


def audio(ts_ms: int, offset: int) -> SensorChunk:
    data = np.zeros(1600, np.float32)
    return SensorChunk("audio", "d1", ts_ms * MS, (ts_ms + 100) * MS, offset, data, 16000.0,
                       None, 0, offset)


def test_rebuilt_window_below_the_emitted_through_end_is_dispatched():
    spec = WindowSpec.default("audio", size_ns=1000 * MS, hop_ns=1000 * MS,
                              allowed_lateness_ns=0)
    # Before the restart: [0, 1) emitted, [1, 2) closed but not acknowledged, through 2.9 s.
    doc = encode_doc({"d1": DeviceRestart(watermark_ns=1000 * MS - 1, through_ns=2900 * MS,
                                          reopen_starts=(1000 * MS,))})
    part = PartitionState.restored(TopicPartition("sensors.audio", 0), spec, lambda: 0.0, doc)
    for i, ts in enumerate(range(0, 4000, 100)):  # the replay from the committed offset
        result = part.windower.add(audio(ts, i))
        part.tracker.consumed(0, i, result.keys)
    dispatch, queue = WindowDispatch(RunnerStats()), Queue()
    dispatch.dispatch(queue, part, part.windower.poll())
    starts = [w.start_ns // MS for w in queue.windows]
    assert starts == [1000, 2000]  # rebuilt [1, 2) (end <= through) and the next one
    assert all(w.outcome == "ok" for w in queue.windows)
    assert dispatch.buffered == 2
    assert part.windower.replayed_records == 10  # the records of [0, 1), emitted before


def test_queued_bytes_and_chunks_over_the_window_budget_are_counted():
    from prometheus_client import REGISTRY

    def over() -> float:
        return REGISTRY.get_sample_value("streambind_window_chunks_over_budget_total",
                                         {"modality": "audio"}) or 0.0

    # A 1 s window keeps at most 4 chunks of 6400 bytes (max_window_bytes 26000); with a low
    # coverage threshold it is still embedded.
    spec = WindowSpec.default("audio", size_ns=1000 * MS, hop_ns=1000 * MS,
                              allowed_lateness_ns=0, max_window_bytes=26_000,
                              min_coverage=0.3, max_gap_fill_ns=1000 * MS)
    part = PartitionState.restored(TopicPartition("sensors.audio", 0), spec, lambda: 0.0)
    for i, ts in enumerate(range(0, 1100, 100)):
        part.tracker.consumed(0, i, part.windower.add(audio(ts, i)).keys)
    before = over()
    dispatch, queue = WindowDispatch(RunnerStats()), Queue()
    dispatch.dispatch(queue, part, part.windower.poll())
    (window,) = queue.windows
    assert over() - before == 6  # 10 chunks, 4 kept
    assert len(window.chunks) == 4
    assert dispatch.queued_bytes == 4 * 6400 and dispatch.buffered == 1
    dispatch.on_output(part, window.key, True)
    dispatch.drain_acks({part.tp: part})
    assert dispatch.queued_bytes == 0 and dispatch.buffered == 0


def _queued_window():
    spec = WindowSpec.default("audio", size_ns=1000 * MS, hop_ns=1000 * MS,
                              allowed_lateness_ns=0)
    part = PartitionState.restored(TopicPartition("sensors.audio", 0), spec, lambda: 0.0)
    for i, ts in enumerate(range(0, 1100, 100)):
        part.tracker.consumed(0, i, part.windower.add(audio(ts, i)).keys)
    dispatch, queue = WindowDispatch(RunnerStats()), Queue()
    dispatch.dispatch(queue, part, part.windower.poll())
    (window,) = queue.windows
    return dispatch, part, window


def test_a_failed_output_of_an_assigned_partition_stops_the_runner():
    dispatch, part, window = _queued_window()
    dispatch.on_output(part, OutputFailed(window.key, KafkaTimeoutError()), True)
    with pytest.raises(StreambindError, match="publishing failed"):
        dispatch.drain_acks({part.tp: part})


def test_a_failed_output_of_a_revoked_partition_is_left_to_its_new_owner():
    """Exactly once, a revocation aborts the open transaction, which fails the writes still
    in flight (TransactionAbortedError): the records are replayed by the partition's new
    owner, so this member only forgets the window (it used to stop on it)."""
    dispatch, part, window = _queued_window()
    assert dispatch.buffered == 1 and dispatch.queued_bytes > 0
    dispatch.on_output(part, OutputFailed(window.key, TransactionAbortedError()), True)
    dispatch.on_output(part, TransactionAbortedError(), False)  # a dead letter's write
    dispatch.drain_acks({})  # the partition was revoked meanwhile
    assert dispatch.buffered == 0 and dispatch.queued_bytes == 0
