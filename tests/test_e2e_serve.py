"""End to end on the real broker and a real local Ray: sensor records in, labelled events out.

One Ray cluster and one embedder application (the untrained tiny model) serve the module;
each test deploys the ingest application with its own topics and consumer group.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from streambind.labels import LabelSet
from streambind.serve.label_feed import publish_label_set
from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.records import malformed_record
from streambind.sim.streams import aligned_origin_ns, device_stream
from streambind.stream.schemas import event_json_schema

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
jsonschema = pytest.importorskip("jsonschema")

pytestmark = [pytest.mark.broker, pytest.mark.ray]

S = 1_000_000_000
MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
SECONDS = {"audio": 6, "vision": 6, "depth": 6, "thermal": 6, "imu": 10}
LABELS = {
    "name": "home",
    "version": 1,
    "labels": [
        {"name": "speech", "prompts": ["people talking"], "threshold": 0.0},
        {"name": "dog", "prompts": ["a dog barking"], "threshold": 0.0},
    ],
}


@pytest.fixture(scope="module")
def ray_serve():
    from streambind.config import AppConfig
    from streambind.serve.app import EMBEDDER_APP, build_embedder_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    embedder = AppConfig.from_dict({"embedder": {"num_cpus": 0.5}, "metrics": {"port": 19100}})
    serve.run(build_embedder_app({"config_dict": embedder.to_dict()}), name=EMBEDDER_APP,
              route_prefix=None)
    yield
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
def pipeline(bootstrap, topic_names, make_topic, tmp_path, ray_serve):
    """Deploys the ingest application on fresh topics; returns (deploy, topics)."""
    from streambind.config import AppConfig
    from streambind.serve.app import INGEST_APP, build_ingest_app

    # Sensor topics exist before the ingest consumer joins, with the 3 partitions the broker
    # would auto-create: a consumer group formed before its topics exist only sees them at
    # a later metadata refresh, which would make these tests depend on timing.
    topics = {m: make_topic(f"sensors.{m}", partitions=3) for m in MODALITIES}
    topics["labels"] = topic_names("labels")[0]
    for output in ("events", "replay", "dlq", "embeddings"):
        topics[output] = make_topic(f"streambind.{output}")
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps(LABELS))

    def deploy(group: str, events_topic: str | None = None) -> None:
        config = AppConfig.from_dict(
            {
                "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
                "stream": {
                    "topics": {m: topics[m] for m in MODALITIES},
                    "events_topic": events_topic or topics["events"],
                    "dlq_topic": topics["dlq"],
                    "embeddings_topic": topics["embeddings"],
                    "idle_timeout_s": 1.0,
                },
                "labels": {"file": str(labels_file), "topic": topics["labels"]},
                "ingest": {"num_cpus": 0.5},
                "metrics": {"port": 19110},
            }
        )
        serve.run(build_ingest_app({"config_dict": config.to_dict()}), name=INGEST_APP,
                  route_prefix=None)

    yield deploy, topics
    serve.delete(INGEST_APP)


def ingest_status() -> dict:
    from streambind.serve.app import INGEST_APP, INGEST_DEPLOYMENT

    return serve.get_deployment_handle(INGEST_DEPLOYMENT, INGEST_APP).status.remote().result()


def produce(bootstrap, topics, t0, devices=("cam-1",), seconds=SECONDS, malformed=()):
    items = []
    for device in devices:
        items += [(topics[m], r) for m, r in device_stream(device, t0, seconds)]
    for i, kind in enumerate(malformed):
        modality, record = malformed_record(kind, devices[0], t0 + S, 10_000 + i)
        items.append((topics[modality], record))
    send_records(bootstrap, items)


def window_key(event):
    return (event["device_id"], event["modality"], event["window_start_ns"], event["window_end_ns"])


def read_events(bootstrap, topic, expect_at_least, timeout_s=90):
    records = read_topic(bootstrap, topic, until=lambda r: len(r) >= expect_at_least,
                         timeout_s=timeout_s)
    time.sleep(1.0)  # anything still in flight (fused re-publications)
    records = read_topic(bootstrap, topic, idle_s=2.0, timeout_s=timeout_s)
    return [json.loads(r.value) for r in records]


def embedded_windows(bootstrap, topic):
    import pyarrow as pa

    windows = set()
    for record in read_topic(bootstrap, topic, idle_s=2.0, timeout_s=30):
        table = pa.ipc.open_stream(record.value).read_all()
        for row in table.to_pylist():
            windows.add((row["device_id"], row["modality"], row["window_start_ns"],
                         row["window_end_ns"]))
    return windows


def test_sensor_streams_become_labelled_events_with_dlq_and_replayable_ids(bootstrap, pipeline):
    deploy, topics = pipeline
    t0 = aligned_origin_ns()
    malformed = ("bad_schema", "decode_error", "non_finite", "future_timestamp", "bad_encoding")
    produce(bootstrap, topics, t0, malformed=malformed)
    deploy("e2e-first")
    # audio 6 s: 5 full 2 s windows (hop 1 s); imu 10 s: 3 full 5 s windows (hop 2.5 s).
    events = read_events(bootstrap, topics["events"], expect_at_least=30)
    schema = event_json_schema()
    for event in events:
        jsonschema.validate(event, schema)
    own = [e for e in events if e["modality"] != "fused"]
    starts = {m: sorted(e["window_start_ns"] - t0 for e in own if e["modality"] == m)
              for m in MODALITIES}
    assert starts["audio"] == [0, 1 * S, 2 * S, 3 * S, 4 * S]
    assert starts["imu"] == [0, int(2.5 * S), 5 * S]
    assert set(starts) == set(MODALITIES) and all(starts.values())
    # thresholds 0: exactly one event per embedded window per labelled modality
    per_window = Counter(window_key(e) for e in own)
    assert set(per_window.values()) == {1}
    assert set(per_window) == embedded_windows(bootstrap, topics["embeddings"])
    assert all(e["labels"] for e in own)
    assert any(e["modality"] == "fused" and len(e["fused_from"]) >= 2 for e in events)

    dlq = read_topic(bootstrap, topics["dlq"], until=lambda r: len(r) >= len(malformed))
    reasons = sorted(dict(r.headers)["error.reason"].decode() for r in dlq)
    assert reasons == sorted(malformed)

    # Replay the same input with a new consumer group: the same event ids.
    deploy("e2e-replay", events_topic=topics["replay"])
    replayed = read_events(bootstrap, topics["replay"], expect_at_least=len(own))
    assert {e["event_id"] for e in replayed if e["modality"] != "fused"} == {
        e["event_id"] for e in own
    }


def test_label_set_update_on_the_topic_applies_without_restart(bootstrap, pipeline):
    from kafka import KafkaProducer

    deploy, topics = pipeline
    t0 = aligned_origin_ns()
    produce(bootstrap, topics, t0, seconds={"audio": 4})
    deploy("labels-update")
    before = read_events(bootstrap, topics["events"], expect_at_least=3)
    assert {e["label_set_version"] for e in before} == {1}

    newer = LabelSet.from_dict({**LABELS, "version": 2,
                                "labels": [{"name": "glass breaking"}, {"name": "rain"}]})
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    publish_label_set(producer, topics["labels"], newer)
    producer.close()
    deadline = time.monotonic() + 30
    while ingest_status()["label_sets"].get("home") != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ingest_status()["label_sets"] == {"home": 2}

    produce(bootstrap, topics, t0 + 20 * S, seconds={"audio": 4})
    after = read_events(bootstrap, topics["events"], expect_at_least=len(before) + 3)
    later = [e for e in after if e["window_start_ns"] >= t0 + 20 * S]
    assert later and {e["label_set_version"] for e in later} == {2}
    assert {lab["label"] for e in later for lab in e["labels"]} <= {"glass breaking", "rain"}

    # A malformed record is rejected and counted; a tombstone takes the set out of force.
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topics["labels"], key=b"home", value=b"{broken").get(timeout=10)
    producer.send(topics["labels"], key=b"home", value=None).get(timeout=10)
    producer.close()
    deadline = time.monotonic() + 30
    while ingest_status()["label_sets"] and time.monotonic() < deadline:
        time.sleep(0.2)
    status = ingest_status()
    assert status["label_sets"] == {}
    assert status["label_records"] == {"applied": 1, "stale": 0, "removed": 1, "rejected": 1}

    # Windows still get embedded, but with no label set in force they make no events.
    produce(bootstrap, topics, t0 + 40 * S, seconds={"audio": 4})
    def embedded_after_removal() -> list:
        windows = embedded_windows(bootstrap, topics["embeddings"])
        return [w for w in windows if w[2] >= t0 + 40 * S]

    deadline = time.monotonic() + 60
    while not embedded_after_removal() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert embedded_after_removal()
    final = read_events(bootstrap, topics["events"], expect_at_least=len(after))
    assert len(final) == len(after) and all(e["window_start_ns"] < t0 + 40 * S for e in final)


def test_killing_an_embedder_replica_loses_no_window(bootstrap, pipeline):
    deploy, topics = pipeline
    t0 = aligned_origin_ns()
    deploy("kill-embedder")
    produce(bootstrap, topics, t0, devices=("mic-1",), seconds={"audio": 6})
    first = read_events(bootstrap, topics["events"], expect_at_least=5)
    assert len(first) == 5

    replicas = [
        actor for actor in ray.util.list_named_actors(all_namespaces=True)
        if "Embedder" in actor["name"] and "SERVE_REPLICA" in actor["name"]
    ]
    assert replicas, "no embedder replica actor found"
    for actor in replicas:
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    # Data arriving while the replica is dead and being replaced must still be embedded.
    produce(bootstrap, topics, t0 + 30 * S, devices=("mic-1",), seconds={"audio": 6})
    events = read_events(bootstrap, topics["events"], expect_at_least=10, timeout_s=120)
    starts = sorted(e["window_start_ns"] - t0 for e in events)
    assert starts == [k * S for k in range(5)] + [(30 + k) * S for k in range(5)]
    assert len({e["event_id"] for e in events}) == 10


def test_realistic_simulator_through_the_pipeline(bootstrap, pipeline):
    from streambind.sim.simulator import simulate

    deploy, topics = pipeline
    deploy("simulated")
    stats = simulate(bootstrap, devices=2, duration_s=8, malformed_share=0.02, seed=7,
                     start_ns=aligned_origin_ns(), topics={m: topics[m] for m in MODALITIES})
    assert stats.malformed > 0 and stats.dropped >= 0
    dlq = read_topic(bootstrap, topics["dlq"], until=lambda r: len(r) >= stats.malformed,
                     timeout_s=90)
    assert len(dlq) == stats.malformed, ingest_status()  # every malformed record, only those
    assert all(dict(r.headers)["error.reason"] for r in dlq)
    events = read_events(bootstrap, topics["events"], expect_at_least=20)
    schema = event_json_schema()
    for event in events:
        jsonschema.validate(event, schema)
        size_s = 5 if event["modality"] == "imu" else 2
        if event["modality"] != "fused":  # windows are epoch-aligned on the hop
            assert event["window_start_ns"] % (size_s * S // 2) == 0
            assert event["window_end_ns"] - event["window_start_ns"] == size_s * S
    assert {e["modality"] for e in events} == {*MODALITIES, "fused"}
    assert {e["device_id"] for e in events} == {"dev-000", "dev-001"}
