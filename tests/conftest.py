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


@pytest.fixture(scope="session")
def broker_hides_aborted_transactions(bootstrap: str) -> bool:
    """Whether ``read_committed`` readers of this broker skip aborted transactions (Apache
    Kafka does; the embedded Tansu broker does not)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    from streambind.sim.kafka_io import read_topic

    topic = _unique("probe.aborted")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=_unique("probe"))
    producer.init_transactions()
    for value, keep in ((b"aborted", False), (b"committed", True)):
        producer.begin_transaction()
        producer.send(topic, value=value)
        producer.flush()
        if keep:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()
    seen = [r.value for r in read_topic(bootstrap, topic, idle_s=1.0, timeout_s=20,
                                        read_committed=True)]
    return seen == [b"committed"]


#: The world model the tests share (vision+text, then every sensor bound): smaller than
#: ``streambind world --train``'s default, trained once per session by ``world_cache``.
TEST_WORLD_TRAIN = dict(segments_per_class=16, windows_per_segment=2, clip_steps=300,
                        bind_steps=200, batch_size=32)


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory):
    """``(cache_dir, model_dir, cfg)``: a model cache holding a world model (``--model
    world`` with ``$STREAMBIND_CACHE=cache_dir``), trained once for the whole session.
    ``$STREAMBIND_TEST_WORLD_CACHE`` names a directory to keep it in across sessions."""
    from pathlib import Path

    from streambind.world.train import WorldTrainConfig, ensure_world_model

    cfg = WorldTrainConfig(**TEST_WORLD_TRAIN)
    keep = os.environ.get("STREAMBIND_TEST_WORLD_CACHE")
    cache = Path(keep) if keep else tmp_path_factory.mktemp("world-cache")
    return cache, ensure_world_model(cache, cfg=cfg, progress=False), cfg
