"""remember against a real broker: a SIGKILL mid-stream and a replay store each window once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind.memories.query import QueryItem
from streambind.memories.remember import Maintenance, RememberConfig
from streambind.memories.search import Memories
from streambind.memories.store import Filter, open_store
from streambind.sim.kafka_io import read_topic
from streambind.stream.chunks import SensorChunk
from streambind.stream.ids import window_id
from streambind.stream.sinks import EmbeddedWindow, encode_embeddings
from streambind.stream.windows import ClosedWindow, WindowKey

S = 1_000_000_000
D = 32
MODEL = "remember-test"
GROUP = "remember-test-group"


def window(device: str, modality: str, start_s: int, offset: int) -> ClosedWindow:
    chunk = SensorChunk(modality, device, start_s * S, (start_s + 2) * S, offset,
                        np.zeros(4, np.float32), 16000.0, None, 0, offset)
    return ClosedWindow(WindowKey(device, modality, start_s * S, (start_s + 2) * S), 0,
                        (chunk,), 1.0, (), False, "emitted", "watermark")


def produce(bootstrap: str, topic: str, events_topic: str, n: int) -> list[str]:
    rng = np.random.default_rng(1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    ids = []
    for i in range(n):
        device, start_s = f"dev{i % 6}", i // 6
        w = window(device, "audio", start_s, i)
        vec = rng.standard_normal(D).astype(np.float32)
        producer.send(topic, key=device.encode(),
                      value=encode_embeddings([EmbeddedWindow(w, vec, MODEL)]))
        ids.append(window_id(device, "audio", w.start_ns, w.end_ns, MODEL))
        if i < 60:  # the first 60 windows are labelled
            event = {"event_id": f"e{i}", "device_id": device, "modality": "audio",
                     "window_start_ns": w.start_ns, "window_end_ns": w.end_ns,
                     "label_set": "home", "label_set_version": 1, "model": MODEL,
                     "labels": [{"label": "glass_breaking", "score": 0.8}]}
            producer.send(events_topic, key=b"e", value=json.dumps(event).encode())
    producer.send(topic, key=b"bad", value=b"not an arrow stream")  # -> DLQ, not a crash
    producer.flush(timeout=60)
    producer.close()
    return ids


def remember(bootstrap: str, store: str, topics: dict[str, str], log_path, *extra: str
             ) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streambind", "remember", "--bootstrap", bootstrap,
           "--store", store, "--group", GROUP, "--embeddings-topic", topics["emb"],
           "--events-topic", topics["events"], "--dlq-topic", topics["dlq"],
           "--batch-rows", "25", "--batch-wait-s", "0.05", "--max-poll-records", "25",
           "--no-fusion", *extra]
    # Output to a file: a full pipe would stall the process before the test reads it.
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def committed_total(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP,
                             enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


def test_sigkill_mid_stream_and_replay_store_each_window_once(bootstrap, make_topic, tmp_path):
    topics = {"emb": make_topic("streambind.embeddings"), "events": make_topic("streambind.events"),
              "dlq": make_topic("streambind.dlq")}
    n = 3000
    ids = produce(bootstrap, topics["emb"], topics["events"], n)
    uri = str(tmp_path / "memories")

    first = remember(bootstrap, uri, topics, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and first.poll() is None:
        try:
            stored = open_store(uri).count(MODEL)
        except Exception:  # noqa: BLE001 - the table may not exist yet
            stored = 0
        if stored >= 300:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert 300 <= stored < n, f"not killed mid-stream ({stored} of {n} stored)"
    committed_at_kill = committed_total(bootstrap, topics["emb"])
    assert committed_at_kill < n + 1

    second = remember(bootstrap, uri, topics, tmp_path / "second.log", "--max-idle-s", "3")
    second.wait(timeout=240)
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]

    store = open_store(uri)
    table = store.get(MODEL, ids)
    stored_ids = table.column("window_id").to_pylist()
    assert store.count(MODEL) == n  # no duplicate rows after the replay
    assert sorted(stored_ids) == sorted(ids)  # each window once
    assert committed_total(bootstrap, topics["emb"]) == n + 1  # offsets after the store commit
    assert len(store.windows_with_label(MODEL, "glass_breaking")) == 60

    dead = read_topic(bootstrap, topics["dlq"], until=lambda r: len(r) >= 1, timeout_s=20)
    assert len(dead) == 1 and dict(dead[0].headers)["error.reason"] == b"bad_schema"

    # search --json over the stored rows: a "more like this" query needs no model.
    proc = subprocess.run(
        [sys.executable, "-m", "streambind", "search", "--store", uri, "--like", ids[10],
         "--device", "dev4", "-k", "3", "--json"],
        capture_output=True, timeout=120, check=True)
    hits = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(hits) == 3 and all(h["device_id"] == "dev4" for h in hits)
    for h in hits:
        assert {"window_id", "device_id", "modality", "window_start_ns", "window_end_ns",
                "score", "moment_start_ns", "moment_end_ns"} <= set(h)
    expected = Memories(store, MODEL).search([QueryItem("like", ids[10])], k=3,
                                             where=Filter(devices=("dev4",)))
    assert [h["window_id"] for h in hits] == [m.best.window_id for m in expected]


def test_forget_device_and_retention(bootstrap, make_topic, tmp_path):
    topics = {"emb": make_topic("streambind.embeddings"), "events": make_topic("streambind.events"),
              "dlq": make_topic("streambind.dlq")}
    produce(bootstrap, topics["emb"], topics["events"], 120)
    uri = str(tmp_path / "memories")
    proc = remember(bootstrap, uri, topics, tmp_path / "run.log", "--max-idle-s", "2")
    proc.wait(timeout=120)
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert open_store(uri).count(MODEL) == 120
    subprocess.run([sys.executable, "-m", "streambind", "remember", "--store", uri,
                    "--forget-device", "dev2"], check=True, capture_output=True, timeout=60)
    store = open_store(uri)
    assert store.count(MODEL) == 100
    hits, _ = store.search(MODEL, np.ones(D, np.float32), 200)
    assert all(h.device_id != "dev2" for h in hits)
    # Retention (the maintenance pass): windows started at 0..19 s; at "now" = 22 s with 10 s
    # retention, those that ended before 12 s go: starts 0..9 s, 5 devices left.
    config = RememberConfig(bootstrap="unused:9092", retention_s=10.0)
    Maintenance(store, config, clock_ns=lambda: 22 * S).run_once()
    assert store.count(MODEL) == 100 - 50
    hits, _ = store.search(MODEL, np.ones(D, np.float32), 200)
    assert len(hits) == 50 and min(h.window_end_ns for h in hits) >= 12 * S
