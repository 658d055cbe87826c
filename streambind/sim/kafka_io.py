"""Small Kafka helpers for the simulator, tests and benchmarks: send and read records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind.sim.records import Record


def send_records(
    bootstrap: str, items: Iterable[tuple[str, Record]], producer: KafkaProducer | None = None,
    **producer_kwargs: Any,
) -> int:
    """Send ``(topic, record)`` pairs in order, flush, and return how many were sent."""
    own = producer is None
    prod = producer or KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                     max_request_size=16 * 1024 * 1024, **producer_kwargs)
    count = 0
    try:
        for topic, record in items:
            prod.send(topic, key=record.key, value=record.value, headers=record.headers)
            count += 1
        prod.flush(timeout=60)
    finally:
        if own:
            prod.close(timeout=10)
    return count


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Any]], bool] | None = None,
    timeout_s: float = 30.0,
    idle_s: float | None = None,
    read_committed: bool = False,
) -> list[Any]:
    """Read every record of ``topic`` from the start (all partitions, no group).

    Stops when ``until(records)`` is true, after ``idle_s`` without new records (when
    given), or at ``timeout_s``. Returns kafka-python ``ConsumerRecord`` objects. With
    ``read_committed``, records of open or aborted transactions are left out.
    """
    isolation = "read_committed" if read_committed else "read_uncommitted"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level=isolation)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.1)
        if partitions is None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if until is not None and until(out):
                break
            if idle_s is not None and time.monotonic() - last_new > idle_s:
                break
            for messages in consumer.poll(timeout_ms=200).values():
                out.extend(messages)
                last_new = time.monotonic()
        return out
    finally:
        consumer.close()
