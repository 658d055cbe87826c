"""Replayed events carry identical labels: a consumer with thresholds above 0 and hysteresis
on is killed with SIGKILL mid-stream and restarted; every event a window gets, before or
after the crash, is the one an uninterrupted run gives it (event_id and labels)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, interleave, timed_stream

pytestmark = pytest.mark.broker
S = 1_000_000_000

# Cosine scores of random 8-d vectors spread around 0: with thresholds at 0.3 and a margin
# of 0.4 a label is often on only because it was on for the previous window. Every device
# sends the same samples (the stand-in embeds content, not the device), so the devices'
# resume points are one draw, not four: with 64 labels nearly every window holds a label by
# hysteresis alone, and wherever the kill lands, the resumed window needs the restored state.
LABELS = {
    "name": "replay", "version": 3, "scoring": "cosine", "hysteresis": 0.4, "top_k": 64,
    "labels": [{"name": f"l{i}", "prompts": [f"label {i}"], "threshold": 0.3}
               for i in range(64)],
}

DEVICES = ("d0", "d1", "d2", "d3")

CONSUMER = r"""
import hashlib, json, sys, time
import torch
from streambind.labels import LabelSet
from streambind.serve.events import LabelledEventSink
from streambind.serve.registry import LabelRegistry
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import run_stream

class SlowStandIn(StandInEmbedder):
    def embed(self, modality, batch):
        time.sleep(0.3)
        return super().embed(modality, batch)

def tower(texts):
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(torch.randn(8, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows)

cfg = StreamConfig(**json.loads(sys.argv[1]))
registry = LabelRegistry(tower)
registry.update(LabelSet.from_dict(json.loads(sys.argv[2])))
sys.stdout.write("started\n"); sys.stdout.flush()
run_stream(cfg, SlowStandIn(dim=8), LabelledEventSink(cfg, registry, fusion=False))
"""


def spawn(cfg: dict, log_path) -> subprocess.Popen:  # noqa: ANN001
    log = open(log_path, "w")  # noqa: SIM115 - the child writes to it
    return subprocess.Popen([sys.executable, "-c", CONSUMER, json.dumps(cfg), json.dumps(LABELS)],
                            stdout=subprocess.PIPE, stderr=log,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def events_by_id(bootstrap: str, topic: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for record in read_topic(bootstrap, topic, idle_s=0.5, timeout_s=10):
        event = json.loads(record.value)
        out[event["event_id"]].append(
            {k: v for k, v in event.items() if k != "emitted_at_ns"})
    return out


def embedded(bootstrap: str, topic: str) -> int:
    return len(read_topic(bootstrap, topic, idle_s=0.3, timeout_s=5))


class TopicCount:
    """Records of a topic so far, from one consumer kept open: polling it is cheap, so the
    kill lands close to the count asked for even on a loaded machine."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest")
        partitions = None
        while partitions is None:
            partitions = self.consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.count = 0

    def __call__(self) -> int:
        for messages in self.consumer.poll(timeout_ms=50).values():
            self.count += len(messages)
        return self.count

    def close(self) -> None:
        self.consumer.close()


def embedded_windows(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """(device, window start) of every embeddings record, in topic order (one partition)."""
    import pyarrow as pa

    rows = []
    for record in read_topic(bootstrap, topic, idle_s=0.5, timeout_s=10):
        for row in pa.ipc.open_stream(record.value).read_all().to_pylist():
            rows.append((row["device_id"], row["window_start_ns"]))
    return rows


def run_until(process: subprocess.Popen, log, done, timeout_s: float,  # noqa: ANN001
              poll_s: float = 0.3) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        assert process.poll() is None, log.read_text()[-2000:]
        time.sleep(poll_s)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_replayed_events_carry_identical_labels(bootstrap, make_topic, tmp_path):
    t0 = aligned_origin_ns()
    topic = make_topic("sensors.audio", partitions=2)
    send_records(bootstrap, [(topic, r) for _, r in interleave(
        *(timed_stream(d, t0, {"audio": 16}) for d in DEVICES))])
    windows = len(DEVICES) * 15  # 2 s windows on a 1 s hop, fully inside 16 s, per device

    def config(group: str) -> dict:
        return {
            "bootstrap": bootstrap, "group_id": f"{group}-{topic}", "modalities": ["audio"],
            "topics": {"audio": topic}, "events_topic": make_topic("streambind.events"),
            "embeddings_topic": make_topic("streambind.embeddings"),
            "dlq_topic": make_topic("streambind.dlq"),
            "state_topic": make_topic("streambind.state"), "idle_timeout_s": 1.0,
            "session_timeout_ms": 2000, "commit_interval_s": 0.1, "max_batch_windows": 2,
            "model": "stand-in",
        }

    reference_cfg = config("reference")
    reference = spawn(reference_cfg, tmp_path / "reference.log")
    try:
        run_until(reference, tmp_path / "reference.log", timeout_s=120,
                  done=lambda: embedded(bootstrap, reference_cfg["embeddings_topic"]) >= windows)
    finally:
        stop(reference)
    expected = {eid: copies[0] for eid, copies in
                events_by_id(bootstrap, reference_cfg["events_topic"]).items()}
    assert embedded(bootstrap, reference_cfg["embeddings_topic"]) == windows
    held = [e for e in expected.values() for lab in e["labels"] if lab["score"] < 0.3]
    assert held, "no label was on by hysteresis alone: the test would not exercise it"

    cfg = config("crash")
    progress = TopicCount(bootstrap, cfg["embeddings_topic"])
    first = spawn(cfg, tmp_path / "first.log")
    try:
        run_until(first, tmp_path / "first.log", timeout_s=60,
                  done=lambda: progress() >= windows // 3, poll_s=0.05)
    finally:
        stop(first, signal.SIGKILL)
        progress.close()
    before = embedded(bootstrap, cfg["embeddings_topic"])
    assert 0 < before < windows, "the kill must land mid-stream"
    second = spawn(cfg, tmp_path / "second.log")
    try:
        # Every window once, plus the replayed ones.
        run_until(second, tmp_path / "second.log", timeout_s=120,
                  done=lambda: len(events_by_id(bootstrap, cfg["events_topic"])) >= len(expected)
                  and embedded(bootstrap, cfg["embeddings_topic"]) >= windows)
    finally:
        stop(second)
    got = events_by_id(bootstrap, cfg["events_topic"])
    # Where the second process took over a device, the state it restored mattered: the
    # window it started with has a label that was on only because it was on just before.
    order = embedded_windows(bootstrap, cfg["embeddings_topic"])
    done_first = set(order[:before])
    resumed = {}
    for device, start_ns in order[before:]:
        resumed.setdefault(device, start_ns)
    by_window = {(e["device_id"], e["window_start_ns"]): e for e in expected.values()}
    boundary_held = [
        (device, start_ns) for device, start_ns in resumed.items()
        if (device, start_ns - S) in done_first
        and any(lab["score"] < 0.3 for lab in by_window.get((device, start_ns), {}).get(
            "labels", []))
    ]
    assert boundary_held, f"no resumed device needed its restored state: {resumed}"
    assert set(got) == set(expected)  # the same events (ids), none missing, none extra
    # Every copy, before and after the crash, is the reference's (a window emitted twice,
    # acknowledged before the kill but not yet committed, carries identical labels too).
    for event_id, copies in got.items():
        for copy in copies:
            assert copy == expected[event_id], (copy, expected[event_id])
