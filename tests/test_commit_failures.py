"""Commit failures a deployment meets first, on the real broker.

- A commit refused because the member is out of its group (a rebalance: kafka-python raises
  ``CommitFailedError`` / ``RebalanceInProgressError``) is not fatal: nothing is marked
  committed and the next commit, after the member rejoined, commits the offsets.
- A missing restart-state topic is created (compacted) when the runner starts, instead of
  failing every exactly-once commit and killing an at-least-once runner; a broker that
  cannot be reached for the check is a typed error at start.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, interleave, timed_stream
from streambind.stream.commit import Committer
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.partition import PartitionState
from streambind.stream.restart import StateTopicError, ensure_state_topic
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker


def test_a_commit_refused_by_a_rebalance_is_retried_not_fatal(bootstrap, make_topic):
    topic = make_topic("sensors.audio")
    cfg = StreamConfig(bootstrap=bootstrap, group_id=f"cf-{topic}", modalities=("audio",),
                       topics={"audio": topic}, state_topic=make_topic("streambind.state"))
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(5):
        producer.send(topic, value=b"x%d" % i)
    producer.flush()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=cfg.group_id,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=6000, heartbeat_interval_ms=500,
                             max_poll_interval_ms=1500)
    committer = Committer(cfg, producer)
    tp = TopicPartition(topic, 0)
    try:
        deadline = time.monotonic() + 30
        records = []
        while len(records) < 5 and time.monotonic() < deadline:
            records += [m for ms in consumer.poll(timeout_ms=200).values() for m in ms]
        assert len(records) == 5
        part = PartitionState.restored(tp, cfg.window_spec("audio"), time.monotonic)
        for msg in records:
            part.tracker.consumed(0, msg.offset)
        time.sleep(3)  # no poll for longer than max_poll_interval_ms: out of the group
        assert committer.commit(consumer, {tp: part}) is False  # refused, not raised
        assert committer.failed_commits == 1 and committer.commits == 0
        deadline = time.monotonic() + 60
        while not committer.commit(consumer, {tp: part}):  # retried after the rejoin
            assert time.monotonic() < deadline, "the retried commit never went through"
            consumer.poll(timeout_ms=100)
        assert consumer.committed(tp) == 5
    finally:
        consumer.close(autocommit=False)
        producer.close()


def _topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_a_missing_state_topic_is_created_at_start(bootstrap, make_topic, topic_names,
                                                   delivery):
    audio = make_topic("sensors.audio")
    (state_topic,) = topic_names("streambind.state")  # not created
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"st-{audio}", modalities=("audio",),
        topics={"audio": audio}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), state_topic=state_topic,
        hop_ms={"audio": 2000}, idle_timeout_s=1.0, session_timeout_ms=2000,
        commit_interval_s=0.2, model="stand-in", delivery=delivery)
    assert state_topic not in _topics(bootstrap)
    runner = StreamRunner(cfg, StandInEmbedder(dim=8)).start()
    try:
        assert runner.ready.wait(30), runner.error
        # Created at start (before any commit could auto-create it by writing to it).
        assert state_topic in _topics(bootstrap)
        t0 = aligned_origin_ns()
        send_records(bootstrap, [(audio, r) for _, r in
                                 interleave(timed_stream("d0", t0, {"audio": 6}))])
        deadline = time.monotonic() + 60
        while runner.stats.commits < 2 or len(read_topic(
                bootstrap, cfg.events_topic, idle_s=0.3, timeout_s=3,
                read_committed=delivery == "exactly_once")) < 3:
            assert runner.error is None, runner.error
            assert time.monotonic() < deadline, runner.stats
            time.sleep(0.3)
    finally:
        runner.stop()
    assert runner.error is None
    docs = read_topic(bootstrap, state_topic, idle_s=0.3, timeout_s=5)
    if docs:  # the broker drops commit metadata (Tansu): the state is on the topic
        assert "d0" in json.loads(docs[-1].value)["dev"]
    if os.environ.get("STREAMBIND_BOOTSTRAP"):  # Apache Kafka reports topic configs
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, state_topic)])
            assert "compact" in json.dumps(res, default=str)
        finally:
            admin.close()


def test_an_unreachable_broker_is_a_typed_error_at_start():
    cfg = StreamConfig(bootstrap="127.0.0.1:1", state_topic="streambind.state")
    with pytest.raises(StateTopicError, match="streambind.state"):
        ensure_state_topic(cfg, timeout_s=2.0)
    assert ensure_state_topic(StreamConfig(state_topic=None)) is False
