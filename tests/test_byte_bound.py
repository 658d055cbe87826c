"""The per-replica byte bound (``max_buffered_bytes``) on the real broker: open plus queued
window bytes stay within the bound (give or take one record), nothing is lost when the bound
fits the open windows, and a bound below what the open windows need never wedges the
runner."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, device_stream, interleave, timed_stream
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker
KIB = 1024
AUDIO_SAMPLE_BYTES = 1600 * 2  # a 100 ms chunk of the test streams: int16 PCM, as sent


class SlowEmbedder(StandInEmbedder):
    """A stand-in that takes 0.15 s per batch: the worker falls behind the consumer."""

    def embed(self, modality, batch):  # noqa: ANN001, ANN201
        time.sleep(0.15)
        return super().embed(modality, batch)


def _config(bootstrap: str, make_topic, topic: str, **overrides) -> StreamConfig:  # noqa: ANN001
    params = dict(
        bootstrap=bootstrap, group_id=f"bb-{topic}", modalities=("audio",),
        topics={"audio": topic}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), state_topic=make_topic("streambind.state"),
        hop_ms={"audio": 2000}, idle_timeout_s=1.0, session_timeout_ms=2000,
        commit_interval_s=0.2, lag_interval_s=0.1, model="stand-in")
    params.update(overrides)
    return StreamConfig(**params)


def _closed_at_bound() -> float:
    return REGISTRY.get_sample_value("streambind_windows_closed_at_bound_total",
                                     {"modality": "audio"}) or 0.0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


def test_byte_bound_pauses_and_every_window_is_emitted(bootstrap, make_topic):
    t0 = aligned_origin_ns()
    topic = make_topic("sensors.audio")
    seconds = 12
    records = interleave(timed_stream("mic-a", t0, {"audio": seconds}),
                         timed_stream("mic-b", t0, {"audio": seconds}))
    # Two devices hold at most ~1.5 windows each open (2 s windows, 1 s lateness): ~300 kB
    # of int16 PCM. The bound leaves room for that (resume at 3/4 of it), so only the queue
    # makes it pause, and waiting for the slow worker loses nothing.
    bound = 512 * KIB
    cfg = _config(bootstrap, make_topic, topic, max_buffered_bytes=bound,
                  max_batch_windows=1, max_buffered_windows=64, max_poll_records=500)
    send_records(bootstrap, [(topic, r) for _, r in records])
    worth = max(len(r.value) for _, r in records) + AUDIO_SAMPLE_BYTES  # one record, 1 window
    runner = StreamRunner(cfg, SlowEmbedder(dim=8))
    closed_at_bound = _closed_at_bound()
    gauges: list[tuple[float, float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            gauges.append(tuple(REGISTRY.get_sample_value(name) or 0.0 for name in (
                "streambind_open_window_bytes", "streambind_queued_window_bytes",
                "streambind_paused_partitions")))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    runner.start()
    expected = 2 * seconds // 2
    try:
        deadline = time.monotonic() + 90
        events: list = []
        while time.monotonic() < deadline and len({e.key for e in events}) < expected:
            assert runner.error is None
            time.sleep(0.3)
            events = read_topic(bootstrap, cfg.events_topic, idle_s=0.2, timeout_s=2)
    finally:
        runner.stop()
        stop.set()
        sampler.join()
    assert len({e.key for e in events}) == expected  # every window, nothing lost
    assert runner.stats.records_late == 0
    assert runner.stats.pauses >= 1
    assert _closed_at_bound() == closed_at_bound  # no window closed early
    assert runner.stats.max_buffered_bytes > bound * 3 // 4  # the bound was reached...
    assert runner.stats.max_buffered_bytes <= bound + worth  # ...and kept, within a record
    assert any(q > 0 for _, q, _ in gauges) and any(o > 0 for o, _, _ in gauges)
    assert any(p >= 1 for _, _, p in gauges)
    assert max(o + q for o, q, _ in gauges) <= bound + worth


def test_bound_below_the_open_windows_need_never_wedges(bootstrap, make_topic, caplog):
    """One 2 s audio window holds ~100 kB; a 50 kB bound pauses inside every window. The
    idle clock then runs (only closing open windows can end the pause), windows close by the
    idle timeout, and the runner reads to the end; the price is counted as late records, the
    windows closed early are counted, and one warning (rate-limited) says which setting to raise."""
    caplog.set_level("WARNING", logger="streambind.stream.backpressure")
    t0 = aligned_origin_ns()
    topic = make_topic("sensors.audio")
    bound = 50 * KIB
    cfg = _config(bootstrap, make_topic, topic, max_buffered_bytes=bound)
    records = device_stream("mic-w", t0, {"audio": 6})
    send_records(bootstrap, [(topic, r) for _, r in records])
    worth = max(len(r.value) for _, r in records) + AUDIO_SAMPLE_BYTES
    runner = StreamRunner(cfg, StandInEmbedder(dim=8))
    closed_at_bound = _closed_at_bound()
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and runner.error is None
               and _committed(bootstrap, cfg.group_id, topic) < len(records)):
            time.sleep(0.5)
    finally:
        runner.stop()
    assert runner.error is None
    assert _committed(bootstrap, cfg.group_id, topic) == len(records)  # read to the end
    assert runner.stats.pauses >= 2
    assert runner.stats.max_buffered_bytes <= bound + worth
    assert runner.stats.records_late > 0  # windows closed by the idle timeout while paused
    assert _closed_at_bound() - closed_at_bound >= 2  # the windows closed early
    assert runner.stats.windows_closed_at_bound == _closed_at_bound() - closed_at_bound
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "streambind.stream.backpressure" and r.levelname == "WARNING"]
    assert len(warnings) == 1  # the first window closed early; the next within a minute not
    assert "max_buffered_bytes" in warnings[0] and "late" in warnings[0]
