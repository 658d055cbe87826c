"""Decoding off the consumer thread (stream/pool.py): order per partition, stale polls
dropped, and the runner's windows identical with and without the pipeline."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from kafka import TopicPartition

from streambind.stream.pool import DecodePipeline

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def _msgs(n, start=0):
    return [SimpleNamespace(offset=start + i) for i in range(n)]


def test_records_decode_on_other_threads_in_order_per_partition():
    seen_threads = set()

    def decode(tp, msg):
        seen_threads.add(threading.current_thread().name)
        time.sleep(0.0005 * (msg.offset % 3))  # uneven work: order must still hold
        return [(tp.partition, msg.offset)]

    pipe = DecodePipeline(decode, threads=3)
    try:
        pipe.submit([(A, _msgs(20)), (B, _msgs(15, 100))])
        assert pipe.pending
        poll = pipe.take()
        assert not pipe.pending
        assert [r[0][1] for r in poll.results[A]] == list(range(20))
        assert [r[0][1] for r in poll.results[B]] == list(range(100, 115))
        assert all(name.startswith("streambind-decode") for name in seen_threads)
        assert pipe.take() is None
    finally:
        pipe.close()


def test_skipped_and_unassigned_partitions_are_not_applied():
    pipe = DecodePipeline(lambda tp, msg: [], threads=1)
    try:
        pipe.submit([(A, _msgs(3)), (B, _msgs(3))])
        pipe.skip([A])  # e.g. sent back to its committed offset by a rebalance
        poll = pipe.take()
        assert [tp for tp, _ in poll.live({A, B})] == [B]
        assert poll.live({A}) == []  # B revoked meanwhile
    finally:
        pipe.close()


def test_one_poll_in_flight_and_empty_polls_are_not_pending():
    pipe = DecodePipeline(lambda tp, msg: [], threads=1)
    try:
        pipe.submit([(A, [])])
        assert not pipe.pending
        pipe.submit([(A, _msgs(1))])
        with pytest.raises(RuntimeError):
            pipe.submit([(B, _msgs(1))])
    finally:
        pipe.close()


def test_a_decode_bug_surfaces_on_take():
    def decode(tp, msg):
        raise KeyError("bug")

    pipe = DecodePipeline(decode, threads=1)
    try:
        pipe.submit([(A, _msgs(1))])
        with pytest.raises(KeyError):
            pipe.take()
    finally:
        pipe.close()


def _run_core(bootstrap, topic, decode_threads, want_windows):
    from streambind.stream.config import StreamConfig
    from streambind.stream.embed import StandInEmbedder
    from streambind.stream.runner import StreamRunner

    class Sink:
        def __init__(self):
            self.keys = []

        def publish(self, producer, items):
            from kafka.future import Future

            self.keys += [(i.window.key, i.window.first_offset) for i in items]
            return [Future().success(None) for _ in items]

    cfg = StreamConfig(bootstrap=bootstrap, group_id=f"pool-{decode_threads}-{time.time_ns()}",
                       modalities=("imu",), topics={"imu": topic}, idle_timeout_s=0.5,
                       session_timeout_ms=2000, max_poll_records=7)
    sink = Sink()
    runner = StreamRunner(cfg, StandInEmbedder(), sink, decode_threads=decode_threads).start()
    deadline = time.monotonic() + 60
    while len(sink.keys) < want_windows and time.monotonic() < deadline and not runner.error:
        time.sleep(0.05)
    runner.stop()
    return sorted(sink.keys)


def test_the_runner_emits_the_same_windows_with_and_without_the_pipeline(bootstrap, make_topic):
    from streambind.sim.kafka_io import send_records
    from streambind.sim.streams import aligned_origin_ns, interleave, timed_stream

    topic = make_topic(partitions=2)
    t0 = aligned_origin_ns()
    streams = [timed_stream(f"dev-{d}", t0, {"imu": 12}) for d in range(3)]
    send_records(bootstrap, [(topic, rec) for _, rec in interleave(*streams)])
    want = 3 * 4  # 12 s per device: 5 s windows every 2.5 s -> 4 full windows each
    inline = _run_core(bootstrap, topic, 0, want)
    piped = _run_core(bootstrap, topic, 2, want)
    assert len(inline) >= want
    assert piped == inline
