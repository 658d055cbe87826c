"""Throughput of the streaming core alone vs raw kafka-python consumption of the same topics.

Publishes a simulated fleet once, then reads it twice from the same broker: (1) a bare
``KafkaConsumer`` that only polls (the ceiling), and (2) the streaming core (decode +
validate + window + assemble + featurize) with a no-op embedder and a sink that
acknowledges at once (no output records), in a consumer group with commits. Prints
records/s and windows/s of each and their ratio. Starts an embedded broker unless
``--bootstrap`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


class _AckSink:
    """Publishes nothing; every window is acknowledged at once."""

    def __init__(self) -> None:
        self.windows = 0

    def publish(self, producer: Any, items: Sequence[Any]) -> list[Any]:
        """Count the windows and return completed futures."""
        from kafka.future import Future

        self.windows += len(items)
        return [Future().success(None) for _ in items]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind bench stream`` options."""
    from streambind.stream.chunks import MODALITIES

    parser.add_argument("--bootstrap", default=None, help="Kafka HOST:PORT (default: embedded)")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="event-time seconds")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pass")


def _raw_pass(bootstrap: str, topics: list[str], total: int, timeout_s: float) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=500)
    tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = 0
    start = None
    deadline = time.perf_counter() + timeout_s
    while seen < total and time.perf_counter() < deadline:
        polled = time.perf_counter()
        batches = consumer.poll(timeout_ms=200)
        if batches and start is None:
            start = polled  # from the poll that returned the first records
        for msgs in batches.values():
            seen += len(msgs)
    elapsed = time.perf_counter() - (start or deadline)
    consumer.close()
    if seen < total:
        logger.warning("raw pass read %d of %d records", seen, total)
    return elapsed


def _core_pass(
    bootstrap: str, topics: dict[str, str], total: int, timeout_s: float
) -> tuple[float, int, Any]:
    from streambind.stream.config import StreamConfig
    from streambind.stream.embed import NoopEmbedder
    from streambind.stream.runner import StreamRunner

    cfg = StreamConfig(bootstrap=bootstrap, group_id=f"bench-{time.time_ns()}",
                       modalities=tuple(topics), topics=topics, idle_timeout_s=0.5,
                       session_timeout_ms=2000, max_poll_records=500,
                       max_buffered_windows=256, max_batch_windows=32, model="noop")
    sink = _AckSink()
    runner = StreamRunner(cfg, NoopEmbedder(), sink)
    runner.start()
    deadline = time.perf_counter() + timeout_s
    stats = runner.stats
    while time.perf_counter() < deadline and runner.error is None:
        done = stats.records_accepted + stats.records_dlq + stats.records_late >= total
        if done and runner._buffered == 0 and sink.windows >= stats.windows_queued:
            break
        time.sleep(0.01)
    # From the poll that returned the first records; the last windows close by idle
    # timeout, and that wait is not work, so it is taken out.
    elapsed = time.perf_counter() - (stats.first_poll_s or deadline) - cfg.idle_timeout_s
    runner.stop()
    return max(elapsed, 1e-9), sink.windows, stats


def run(args: argparse.Namespace) -> int:
    """Run both passes and print the comparison."""
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("streambind.stream").setLevel(logging.WARNING)
    from streambind.broker import EmbeddedBroker
    from streambind.sim.kafka_io import send_records
    from streambind.sim.simulator import SimStats, generate
    from streambind.sim.streams import aligned_origin_ns

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    try:
        suffix = str(time.time_ns())
        topics = {m: f"bench.sensors.{m}.{suffix}" for m in args.modalities}
        stats = SimStats()
        items = generate(args.devices, args.duration, modalities=args.modalities,
                         seed=args.seed, start_ns=aligned_origin_ns(), topics=topics,
                         stats=stats, drop_share=0.0, reorder_share=0.0)
        payload_mb = sum(len(r.value) for _, _, r in items) / 1e6
        total = send_records(bootstrap, [(t, r) for _, t, r in items])
        out = sys.stdout.write
        out(f"workload: {args.devices} devices x {args.duration:g} s event time, "
            f"{total} records ({payload_mb:.1f} MB), per modality {stats.records}\n")
        raw_s = _raw_pass(bootstrap, list(topics.values()), total, args.timeout)
        core_s, windows, core = _core_pass(bootstrap, topics, total, args.timeout)
        raw_rps = total / raw_s
        core_rps = total / core_s
        out(f"raw kafka-python consume: {raw_rps:10.0f} records/s ({raw_s:.2f} s)\n")
        out(f"streaming core (no-op embedder): {core_rps:10.0f} records/s, "
            f"{windows / core_s:8.1f} windows/s ({core_s:.2f} s, {windows} windows, "
            f"{core.windows_dropped} dropped, {core.records_late} late records)\n")
        out(f"core / raw records/s ratio: {core_rps / raw_rps:.3f}\n")
    finally:
        if broker is not None:
            broker.stop()
    return 0
