"""The labelled-event sink in the real streaming core, on the real broker: its counters
match what reached the topics, and a text-tower outage never stops the stream."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pyarrow as pa
import pytest
import torch
from prometheus_client import REGISTRY

from streambind.labels import LabelSet
from streambind.serve.embedder import ModelRunner
from streambind.serve.events import LabelledEventSink
from streambind.serve.registry import LabelRegistry
from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.streams import aligned_origin_ns, device_stream
from streambind.stream.config import StreamConfig
from streambind.stream.embed import StandInEmbedder
from streambind.stream.runner import StreamRunner

pytestmark = pytest.mark.broker
S = 1_000_000_000
LABELS = {"name": "home", "version": 1, "hysteresis": 0.05, "labels": [
    {"name": "speech", "prompts": ["people talking"], "threshold": 0.2},
    {"name": "dog", "prompts": ["a dog barking"], "threshold": 0.2},
    {"name": "walking", "prompts": ["a person walking"], "threshold": 0.2},
]}


def make_config(bootstrap, make_topic, modalities, **overrides) -> StreamConfig:  # noqa: ANN001
    topics = {m: make_topic(f"sensors.{m}") for m in modalities}
    params = dict(
        bootstrap=bootstrap, group_id=f"g-{topics[modalities[0]]}", modalities=modalities,
        topics=topics, events_topic=make_topic("streambind.events"),
        embeddings_topic=make_topic("streambind.embeddings"),
        dlq_topic=make_topic("streambind.dlq"), hop_ms={"audio": 1000, "imu": 2500},
        idle_timeout_s=1.0, session_timeout_ms=6000, commit_interval_s=0.2,
        lag_interval_s=0.2, publish_embeddings=True,
    )
    params.update(overrides)
    return StreamConfig(**params)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def samples(prefix: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name.startswith(prefix):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def embedded_windows(bootstrap: str, topic: str) -> list[tuple]:
    rows = []
    for record in read_topic(bootstrap, topic, idle_s=1.0, timeout_s=20):
        for row in pa.ipc.open_stream(record.value).read_all().to_pylist():
            rows.append((row["device_id"], row["modality"], row["window_start_ns"]))
    return rows


def test_counters_match_what_reached_the_topics(bootstrap, make_topic):
    model = ModelRunner({"source": "tiny"})
    registry = LabelRegistry(model.embed_texts)
    registry.update(LabelSet.from_dict(LABELS))
    cfg = make_config(bootstrap, make_topic, ("audio", "imu"), model=model.model_name)
    t0 = aligned_origin_ns()
    send_records(bootstrap, [(cfg.topics[m], r)
                             for m, r in device_stream("dev-1", t0, {"audio": 6, "imu": 10})])
    before = samples("streambind_")
    runner = StreamRunner(cfg, model, LabelledEventSink(cfg, registry), model=model.model_name)
    runner.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and runner.error is None:
            if len(embedded_windows(bootstrap, cfg.embeddings_topic)) >= 5 + 3:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # the last acknowledgements' callbacks
    finally:
        runner.stop()
    after = samples("streambind_")
    events = [json.loads(r.value)
              for r in read_topic(bootstrap, cfg.events_topic, idle_s=1.0, timeout_s=20)]
    windows = embedded_windows(bootstrap, cfg.embeddings_topic)
    assert len(windows) == 8 and events

    by_modality = Counter(e["modality"] for e in events)
    assert "fused" in by_modality
    for modality in ("audio", "imu", "fused"):
        assert delta(after, before, "streambind_events_total", modality=modality) == (
            by_modality[modality]), modality
    labels = Counter((e["label_set"], lab["label"]) for e in events for lab in e["labels"])
    for (label_set, label), count in labels.items():
        assert delta(after, before, "streambind_labels_total",
                     label_set=label_set, label=label) == count
    for modality in ("audio", "imu"):
        embedded = sum(1 for w in windows if w[1] == modality)
        assert delta(after, before, "streambind_windows_total",
                     modality=modality, outcome="emitted") == embedded
        # One latency observation per window (no longer one per sink and one per worker).
        assert delta(after, before, "streambind_end_to_end_latency_seconds_count",
                     modality=modality) == embedded
        # Ingest side (requests) and embedder side (forward passes) agree on the windows.
        assert delta(after, before, "streambind_embed_request_windows_sum",
                     modality=modality) == embedded
        assert delta(after, before, "streambind_batch_size_sum", modality=modality) == embedded
        assert delta(after, before, "streambind_embed_request_seconds_count",
                     modality=modality) == delta(after, before, "streambind_embed_seconds_count",
                                                 modality=modality) >= 1


class GatedTower:
    """A text tower that is down (blocks like the Serve client retrying) until opened."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.calls = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        self.up.wait(120)
        out = torch.zeros(len(texts), 16)
        for i, text in enumerate(texts):
            out[i, hash(text) % 16] = 1.0
        return out


def test_a_text_tower_outage_never_stops_the_stream(bootstrap, make_topic):
    tower = GatedTower()
    tower.up.set()
    registry = LabelRegistry(tower)
    registry.update(LabelSet.from_dict({**LABELS, "labels": [
        {**label, "threshold": 0.0} for label in LABELS["labels"]]}))
    tower.up.clear()  # the embedder's text tower goes down
    cfg = make_config(bootstrap, make_topic, ("audio",), model="stand-in",
                      delivery="exactly_once")
    sink = LabelledEventSink(cfg, registry, fusion=False)
    runner = StreamRunner(cfg, StandInEmbedder(dim=16), sink, model="stand-in").start()
    t0 = aligned_origin_ns()

    def events() -> list[dict]:
        return [json.loads(r.value) for r in read_topic(bootstrap, cfg.events_topic,
                                                         idle_s=0.5, timeout_s=10,
                                                         read_committed=True)]

    def wait_for(predicate, timeout_s: float = 60) -> list[dict]:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        seen: list[dict] = []
        while time.monotonic() < deadline and runner.error is None:
            seen = events()
            if predicate(seen):
                return seen
            time.sleep(0.3)
        return seen

    try:
        # A new version arrives while the text tower is down: it waits, v1 stays in force.
        assert registry.submit(LabelSet.from_dict({**LABELS, "version": 2}))
        commits_before = runner.stats.commits
        send_records(bootstrap, [(cfg.topics["audio"], r)
                                 for _, r in device_stream("mic-1", t0, {"audio": 4})])
        seen = wait_for(lambda e: len(e) >= 3)
        assert len(seen) >= 3, runner.error
        assert {e["label_set_version"] for e in seen} == {1}
        assert registry.pending() == {"home": 2}
        # The consumer kept polling and committing (exactly-once commits take the lock the
        # publishing worker holds: a remote call under it would have stopped them).
        assert runner.stats.commits > commits_before and runner.error is None
        assert tower.calls >= 1  # the preparation is stuck in the tower, off the stream's path

        tower.up.set()  # the tower is back: version 2 takes effect
        assert registry.settle(30) and registry.pending() == {}
        send_records(bootstrap, [(cfg.topics["audio"], r)
                                 for _, r in device_stream("mic-1", t0 + 20 * S, {"audio": 4})])
        seen = wait_for(lambda e: any(x["window_start_ns"] >= t0 + 20 * S for x in e))
        later = [e for e in seen if e["window_start_ns"] >= t0 + 20 * S]
        assert later and {e["label_set_version"] for e in later} == {2}
    finally:
        tower.up.set()
        registry.stop()
        runner.stop()
