"""Backpressure: an embedder slower than the input pauses partitions, buffers stay bounded."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, device_stream
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker


class SlowEmbedder(StandInEmbedder):
    """A stand-in that takes 0.2 s per batch."""

    def embed(self, modality, batch):  # noqa: ANN001, ANN201
        time.sleep(0.2)
        return super().embed(modality, batch)


def test_slow_embedder_pauses_partitions_and_bounds_the_buffer(bootstrap, make_topic):
    t0 = aligned_origin_ns()
    topic = make_topic("sensors.audio")
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"bp-{topic}", modalities=("audio",),
        topics={"audio": topic}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), hop_ms={"audio": 2000},
        idle_timeout_s=1.0, session_timeout_ms=2000, commit_interval_s=0.2,
        lag_interval_s=0.1, max_buffered_windows=4, max_batch_windows=2,
        max_poll_records=10, model="stand-in",
    )
    seconds = 40  # 20 windows of 2 s, 400 records of 100 ms
    send_records(bootstrap, [(topic, r) for _, r in device_stream("bp", t0, {"audio": seconds})])
    runner = StreamRunner(cfg, SlowEmbedder(dim=8))
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            paused = REGISTRY.get_sample_value("streambind_paused_partitions") or 0.0
            lag = REGISTRY.get_sample_value(
                "streambind_consumer_lag_records", {"topic": topic, "partition": "0"}) or 0.0
            samples.append((paused, lag, runner._buffered))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    runner.start()
    try:
        deadline = time.monotonic() + 90
        events: list = []
        while time.monotonic() < deadline and len(events) < seconds // 2:
            time.sleep(0.5)
            events = read_topic(bootstrap, cfg.events_topic, idle_s=0.2, timeout_s=2)
            assert runner.error is None
    finally:
        runner.stop()
        stop.set()
        sampler.join()
    assert len({e.key for e in events}) == seconds // 2  # nothing lost while paused
    assert runner.stats.pauses >= 1
    assert any(paused >= 1 for paused, _, _ in samples), "partitions were never paused"
    assert any(lag > 0 for _, lag, _ in samples), "lag was never exported"
    # Bounded: the limit plus what one poll (10 records of 100 ms) can close at once.
    slack = 2
    assert runner.stats.max_buffered <= cfg.max_buffered_windows + slack
    assert max(b for _, _, b in samples) <= cfg.max_buffered_windows + slack
