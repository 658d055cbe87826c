"""WindowDispatch after a restart: a window rebuilt from the restart state (closed before the
restart but not acknowledged, so ending at or below the device's emitted-through end) is
queued and emitted; windows emitted before the restart never reach dispatch at all."""

from __future__ import annotations

import numpy as np
from kafka import TopicPartition

from streambind.stream.chunks import SensorChunk
from streambind.stream.dispatch import WindowDispatch
from streambind.stream.partition import PartitionState
from streambind.stream.restart import encode_doc
from streambind.stream.stats import RunnerStats
from streambind.stream.windows import DeviceRestart, WindowSpec

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
