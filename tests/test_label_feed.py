"""Records of the labels topic: newer versions apply, tombstones remove, bad records are
rejected with a reason and counted, and nothing stops the feed."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from prometheus_client import REGISTRY

from streambind.errors import ServeError
from streambind.serve.label_feed import MAX_LABEL_RECORD_BYTES, LabelFeed
from streambind.serve.registry import LabelRegistry

DOC = {"name": "home", "version": 1, "labels": [{"name": "dog"}, {"name": "speech"}]}


def record(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def unit_text_embeddings(texts: list[str]) -> torch.Tensor:
    # Deterministic stand-in for the text tower: one axis per distinct prompt length.
    out = torch.zeros(len(texts), 64)
    for i, text in enumerate(texts):
        out[i, len(text) % 64] = 1.0
    return out


@pytest.fixture
def registry():
    registry = LabelRegistry(unit_text_embeddings)
    yield registry
    registry.stop()


@pytest.fixture
def feed(registry) -> LabelFeed:
    return LabelFeed(registry, "streambind.labels", {})


def in_force(registry: LabelRegistry) -> dict[str, int]:
    assert registry.settle(10)  # accepted versions are prepared in the background
    return {s.name: s.version for s in registry.label_sets()}


def rejected_metric() -> float:
    value = REGISTRY.get_sample_value("streambind_label_records_total", {"outcome": "rejected"})
    return value or 0.0


def test_versions_apply_in_order_and_older_ones_are_stale(feed, registry):
    assert feed.handle(b"home", record(DOC)) == "applied"
    assert feed.handle(b"home", record({**DOC, "version": 3})) == "applied"
    assert feed.handle(b"home", record({**DOC, "version": 2})) == "stale"
    assert feed.handle(None, record({**DOC, "name": "office"})) == "applied"  # key optional
    assert in_force(registry) == {"home": 3, "office": 1}
    assert feed.counts == {"applied": 3, "stale": 1, "removed": 0, "rejected": 0}


def test_a_tombstone_removes_the_set_and_a_later_version_brings_it_back(feed, registry):
    feed.handle(b"home", record(DOC))
    window = torch.nn.functional.normalize(torch.ones(64), dim=0)
    assert in_force(registry) == {"home": 1}
    assert [s.name for s, _ in registry.score("audio", window)] == ["home"]

    assert feed.handle(b"home", None) == "removed"
    assert in_force(registry) == {}
    assert registry.score("audio", window) == []
    assert feed.handle(b"home", None) == "stale"  # nothing left to remove

    # After a deletion any version is new again (the topic's order is the truth).
    assert feed.handle(b"home", record(DOC)) == "applied"
    assert in_force(registry) == {"home": 1}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"home", b"{not json", "not valid JSON"),
        (b"home", b"\xff\xfe", "not valid JSON"),
        (b"home", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting bomb
        (b"home", record({**DOC, "version": -1}), "version"),
        (b"home", record({"name": "home", "version": 1, "labels": []}), "labels"),
        (b"office", record(DOC), "is not the set name"),
        (b"home", b" " * (MAX_LABEL_RECORD_BYTES + 1), "too large"),
        (None, None, "tombstone without a key"),
    ],
)
def test_bad_records_are_rejected_with_a_reason_and_counted(
    feed, registry, caplog, key, value, reason
):
    feed.handle(b"home", record(DOC))
    before = rejected_metric()
    with caplog.at_level(logging.ERROR, logger="streambind.serve.label_feed"):
        assert feed.handle(key, value, "streambind.labels[0]@7") == "rejected"
    assert "streambind.labels[0]@7" in caplog.text and reason in caplog.text
    assert feed.counts["rejected"] == 1 and rejected_metric() == before + 1
    assert in_force(registry) == {"home": 1}  # the set in force is untouched


@pytest.mark.parametrize(
    "bad",
    [
        {**DOC, "labels": [{"name": "dog", "modalities": [["audio"]]}]},  # a TypeError before
        {**DOC, "labels": [{"name": "dog", "prompts": [["a dog"]]}]},
        {**DOC, "labels": [{"name": "dog", "threshold": "0.3"}]},
        {**DOC, "labels": [{"name": ["dog"]}]},
        {**DOC, "labels": {"dog": {}}},
        {**DOC, "version": 2.5},
        {**DOC, "top_k": "3"},
        [DOC],
    ],
)
def test_records_of_the_wrong_type_are_rejected_not_raised(feed, registry, caplog, bad):
    feed.handle(b"home", record(DOC))
    with caplog.at_level(logging.ERROR, logger="streambind.serve.label_feed"):
        assert feed.handle(b"home", record(bad), "streambind.labels[0]@9") == "rejected"
    assert "streambind.labels[0]@9" in caplog.text and "label set" in caplog.text
    assert in_force(registry) == {"home": 1}
    assert feed.handle(b"home", record({**DOC, "version": 2})) == "applied"  # still working


@pytest.mark.broker
def test_the_feed_thread_survives_a_bad_record_and_applies_later_versions(
    bootstrap, make_topic, registry
):
    from kafka import KafkaProducer

    topic = make_topic("streambind.labels")
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    bad = {**DOC, "version": 2, "labels": [{"name": "dog", "modalities": [["audio"]]}]}
    for doc in (DOC, bad, {**DOC, "version": 3}):
        producer.send(topic, key=b"home", value=record(doc)).get(timeout=10)
    producer.close()
    feed = LabelFeed(registry, topic, {"bootstrap_servers": bootstrap}).start()
    try:
        deadline = time.monotonic() + 30
        while in_force(registry).get("home") != 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_force(registry) == {"home": 3}
        assert feed.counts == {"applied": 2, "stale": 0, "removed": 0, "rejected": 1}
        assert feed.alive and feed.error is None
    finally:
        feed.stop()
    assert not feed.alive


def test_a_dead_feed_thread_fails_the_replica_health_check(registry):
    from streambind.serve.ingest import check_parts

    class Runner:  # the consumer loop's only attribute the probe reads
        error = None

    # No broker at this address: the client gives up and the feed thread dies.
    unreachable = {"bootstrap_servers": "127.0.0.1:9", "api_version_auto_timeout_ms": 300}
    feed = LabelFeed(registry, "streambind.labels", unreachable).start()
    feed._thread.join(30)
    assert not feed.alive and feed.error is not None
    with pytest.raises(ServeError, match="label feed stopped"):
        check_parts(Runner(), feed, registry)
