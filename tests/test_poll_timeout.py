"""How long the consumer thread's poll may wait: short while something waits on that
thread, else no longer than until the next device times out (its last windows then close
on time, not up to a whole poll late)."""

from __future__ import annotations

import numpy as np
import pytest
from kafka import TopicPartition

from streambind.stream.chunks import SensorChunk
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.partition import PartitionState
from streambind.stream.runner import SHORT_POLL_MS, StreamRunner

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def audio(device: str, ts_ms: int, offset: int) -> SensorChunk:
    return SensorChunk("audio", device, ts_ms * MS, (ts_ms + 100) * MS, offset,
                       np.zeros(1600, np.float32), 16000.0, None, 0, offset)


@pytest.fixture
def runner_and_clock():
    clock = FakeClock()
    cfg = StreamConfig(bootstrap="127.0.0.1:9", modalities=("audio",), idle_timeout_s=0.5,
                       poll_timeout_ms=200, model="stand-in")
    runner = StreamRunner(cfg, StandInEmbedder(dim=8), sink=object(), clock=clock)
    tp = TopicPartition("sensors.audio", 0)
    part = PartitionState.restored(tp, cfg.window_spec("audio"), runner._idle_clock)
    runner.assignments.parts[tp] = part
    return runner, part, clock


@pytest.mark.parametrize("quiet_s, expected_ms", [
    (None, 200),   # no device: the configured timeout
    (0.0, 200),    # just seen: the timeout (0.5 s) is further than a poll
    (0.38, 121),   # 120 ms to go (+1 ms: poll() closes only past the timeout)
    (0.6, 0),      # overdue
])
def test_poll_waits_no_longer_than_until_the_next_device_times_out(
        runner_and_clock, quiet_s, expected_ms):
    runner, part, clock = runner_and_clock
    if quiet_s is not None:
        part.windower.add(audio("d1", 0, 0))
        clock.now_s += quiet_s
    assert runner._poll_timeout_ms() == expected_ms


def test_poll_is_short_while_windows_wait_for_acknowledgement(runner_and_clock):
    runner, _part, _clock = runner_and_clock
    assert runner._poll_timeout_ms() == 200
    runner.dispatch.buffered = 1  # a window queued to the worker, not acknowledged yet
    assert runner._poll_timeout_ms() == SHORT_POLL_MS
    runner.dispatch.buffered = 0
    runner.backpressure.paused = True
    assert runner._poll_timeout_ms() == SHORT_POLL_MS
