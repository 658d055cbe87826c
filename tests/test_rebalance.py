"""A rebalance mid-stream on the real broker: a second member joins and takes partitions.

No window may be lost, in either delivery mode: the member that loses a partition drops its
state and unpublished windows, the new owner (or the same member, when the partition comes
back) starts from the committed offset and restart state. At least once, windows in flight
at the rebalance come out twice, identical. Exactly once, the open transaction is aborted,
so a ``read_committed`` reader sees every window once, on a broker that hides aborted
transactions (Apache Kafka, through ``STREAMBIND_BOOTSTRAP``; Tansu shows them).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import torch
from kafka import KafkaConsumer, TopicPartition

from streambind.errors import ConfigError
from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, interleave, timed_stream
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker
S = 1_000_000_000
DEVICES = ("d0", "d1", "d2", "d3", "d4", "d5")
AUDIO_S = 24


class SlowStandIn(StandInEmbedder):
    """Slow enough that windows are queued and in flight when the rebalance comes."""

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(0.15)
        return super().embed(modality, batch)


def _config(bootstrap: str, make_topic, **overrides) -> StreamConfig:  # noqa: ANN001
    audio = make_topic("sensors.audio", partitions=2)
    params = dict(
        bootstrap=bootstrap, group_id=f"eo-{audio}", modalities=("audio",),
        topics={"audio": audio}, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), state_topic=make_topic("streambind.state"),
        hop_ms={"audio": 2000}, idle_timeout_s=1.0, session_timeout_ms=2000,
        commit_interval_s=0.2, max_batch_windows=2, model="stand-in",
    )
    params.update(overrides)
    return StreamConfig(**params)


def _events(bootstrap: str, cfg: StreamConfig, at_least: int | None = None) -> list[dict]:
    """The committed events; with ``at_least``, as soon as that many are there."""
    until = None if at_least is None else (lambda records: len(records) >= at_least)
    records = read_topic(bootstrap, cfg.events_topic, until=until, idle_s=0.5, timeout_s=10,
                         read_committed=True)
    return [json.loads(r.value) for r in records]


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_a_rebalance_mid_stream_loses_no_window(
    bootstrap, make_topic, delivery, broker_hides_aborted_transactions
):
    cfg = _config(bootstrap, make_topic, delivery=delivery)
    t0 = aligned_origin_ns()
    streams = [timed_stream(d, t0, {"audio": AUDIO_S}) for d in DEVICES]
    send_records(bootstrap, [(cfg.topic(m), r) for m, r in interleave(*streams)])
    expected = {(d, t0 + k * 2 * S) for d in DEVICES for k in range(AUDIO_S // 2)}

    first = StreamRunner(cfg, SlowStandIn(dim=8)).start()
    second = None
    try:
        deadline = time.monotonic() + 60
        while len(_events(bootstrap, cfg, at_least=4)) < 4:
            assert first.error is None and time.monotonic() < deadline, first.error
            time.sleep(0.2)
        second = StreamRunner(cfg, SlowStandIn(dim=8)).start()  # takes partitions away
        assert second.ready.wait(30), "the second member got no partition"
        deadline = time.monotonic() + 90
        while {(e["device_id"], e["window_start_ns"]) for e in _events(bootstrap, cfg)} < expected:
            assert first.error is None and second.error is None, (first.error, second.error)
            if time.monotonic() > deadline:
                got = {(e["device_id"], e["window_start_ns"]) for e in _events(bootstrap, cfg)}
                missing = sorted((d, (t - t0) // S) for d, t in expected - got)
                pytest.fail(f"windows missing: {missing}; {first.stats}; {second.stats}")
            time.sleep(0.5)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    events = _events(bootstrap, cfg)
    assert {(e["device_id"], e["window_start_ns"]) for e in events} == expected
    by_id: dict[str, set] = {}
    for e in events:
        by_id.setdefault(e["event_id"], set()).add((e["device_id"], e["window_start_ns"]))
    assert all(len(windows) == 1 for windows in by_id.values())  # copies are the same window
    if delivery == "exactly_once" and broker_hides_aborted_transactions:
        copies = Counter(e["event_id"] for e in events)
        assert not {eid: n for eid, n in copies.items() if n > 1}, "a window came out twice"
    assert second.stats.records_accepted > 0, "the second member never got a partition"
    assert first.stats.commits > 0 and second.stats.commits > 0

    # Both partitions' offsets were committed (through the transactions, exactly once).
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=cfg.group_id)
    try:
        tps = [TopicPartition(cfg.topic("audio"), p) for p in (0, 1)]
        committed = {tp: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close()
    assert all(offset is not None and offset > 0 for offset in committed.values()), committed


def test_delivery_mode_is_validated_and_sets_up_transactions():
    with pytest.raises(ConfigError, match="delivery"):
        StreamConfig(delivery="at_most_once")
    with pytest.raises(ConfigError, match="transaction_timeout_s"):
        StreamConfig(delivery="exactly_once", transaction_timeout_s=0)
    cfg = StreamConfig(delivery="exactly_once", transaction_timeout_s=12.5)
    assert cfg.consumer_kwargs()["isolation_level"] == "read_committed"
    producer = cfg.producer_kwargs("pod-7")
    assert producer["transactional_id"] == "pod-7"
    assert producer["transaction_timeout_ms"] == 12500 and producer["acks"] == "all"
    plain = StreamConfig()
    assert "transactional_id" not in plain.producer_kwargs()
    assert plain.consumer_kwargs()["isolation_level"] == "read_uncommitted"
