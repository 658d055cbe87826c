"""Shared fixtures: a Kafka-compatible broker and unique topics per test.

``bootstrap`` (session): ``$STREAMBIND_BOOTSTRAP`` when set (run the suite against a real
Apache Kafka), otherwise an embedded Tansu broker on a free port, stopped at the end.
``make_topic(prefix, partitions=1)``: creates a topic with a name unique to this test run
and returns its name. ``topic_names(*prefixes)``: unique names without creating topics.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """``HOST:PORT`` of a running Kafka-compatible broker."""
    external = os.environ.get("STREAMBIND_BOOTSTRAP")
    if external:
        yield external
        return
    from streambind.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap


def _unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_names() -> Callable[..., list[str]]:
    """Unique topic names, one per prefix (topics are not created)."""

    def names(*prefixes: str) -> list[str]:
        return [_unique(p) for p in prefixes]

    return names


@pytest.fixture
def make_topic(bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create topics with unique names: ``make_topic("sensors.audio", partitions=2)``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)

    def create(prefix: str = "test", partitions: int = 1) -> str:
        name = _unique(prefix)
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        return name

    yield create
    admin.close()
