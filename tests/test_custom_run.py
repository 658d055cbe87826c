"""A sensor bound with `streambind bind` is consumed, windowed, embedded and labelled by run.

The fast tests run the streaming core in process on the real broker with a bound model
directory (the tiny base plus an untrained series tower): the new sensor's records are
decoded, windowed as its tower says, featurized as bind did, embedded by its tower, scored
against a label set that names it, and published with ``modality: wrist``; bad records of
that kind go to the DLQ with a reason.

The end-to-end test is the issue's "what must be shown": records of a series sensor that is
none of the six (the world's wearable signals published as ``--kind series``) next to camera
frames on the real broker -> ``streambind bind`` on Ray Train (the real CLI, a local Ray) ->
``streambind run --model DIR`` (the real CLI, in a subprocess, on Ray Serve) -> labelled
events for that sensor whose accuracy against the simulator's ground truth beats chance and
an untrained tower of the same config by a wide margin.
"""

from __future__ import annotations

import json
import time

import jsonschema
import numpy as np
import pytest

from streambind.errors import ConfigError
from streambind.labels import LabelSet
from streambind.model.kinds import SeriesConfig
from streambind.sim.kafka_io import read_topic, send_records
from streambind.sim.records import Record
from streambind.sim.streams import aligned_origin_ns
from streambind.stream import custom
from streambind.stream.schemas import event_json_schema

S = 1_000_000_000
WRIST = SeriesConfig(name="wrist", channels=3, sample_rate_hz=50.0, window_s=2.0,
                     patch_samples=10, width=32, depth=1, heads=4, logit_scale=5.0)


def series_records(device: str, t0: int, seconds: float, rate_hz: float = 50.0,
                   chunk_s: float = 0.5, seed: int = 0) -> list[Record]:
    """A 3-channel series of ``seconds``, in ``chunk_s`` records (one chunk each)."""
    rng = np.random.default_rng(seed)
    n = round(chunk_s * rate_hz)
    out = []
    for k in range(round(seconds / chunk_s)):
        data = rng.standard_normal((n, 3)).astype(np.float32)
        value = custom.encode_series(device, [t0 + round(k * chunk_s * S)], [k], rate_hz, [data])
        out.append(Record(device.encode(), value, custom.headers("series")))
    return out


def bad_wrist_records(device: str, t0: int) -> dict[str, Record]:
    """One record per dead-letter reason a series sensor's topic can produce."""
    good = series_records(device, t0, 0.5, seed=9)[0]
    nan = np.zeros((25, 3), np.float32)
    nan[3, 1] = np.nan
    frame = custom.encode_frame(device, t0, 1, np.zeros((4, 4), np.uint16))
    return {
        "bad_schema": Record(device.encode(), frame, custom.headers("frame")),  # wrong kind
        "non_finite": Record(device.encode(), custom.encode_series(
            device, [t0], [2], 50.0, [nan]), custom.headers("series")),
        "bad_key": good._replace(key=b"someone-else"),
        "decode_error": Record(device.encode(), b"not arrow at all", custom.headers("series")),
        "future_timestamp": Record(device.encode(), custom.encode_series(
            device, [time.time_ns() + 3600 * S], [3], 50.0, [np.zeros((25, 3), np.float32)]),
            custom.headers("series")),
    }


# --------------------------------------------------------------------------- no broker


def test_labels_name_bound_sensors_and_default_to_every_modality() -> None:
    doc = {"name": "home", "version": 1, "labels": [
        {"name": "shaking", "modalities": ["wrist"]},
        {"name": "still"},
        {"name": "dark", "modalities": ["vision"]},
    ]}
    labels = LabelSet.from_dict(doc)
    assert [lab.name for lab in labels.labels_for("wrist")] == ["shaking", "still"]
    assert [lab.name for lab in labels.labels_for("vision")] == ["still", "dark"]
    assert LabelSet.from_dict(labels.to_dict()) == labels  # "every modality" survives
    with pytest.raises(ConfigError, match="modalities/0"):
        LabelSet.from_dict({**doc, "labels": [{"name": "x", "modalities": ["Wrist!"]}]})


def test_event_schema_narrows_to_the_models_modalities() -> None:
    event = {"event_id": "0" * 64, "device_id": "d", "modality": "wrist", "window_start_ns": 0,
             "window_end_ns": 1, "label_set": "s", "label_set_version": 1, "labels": [],
             "model": "m", "emitted_at_ns": 0}
    jsonschema.validate(event, event_json_schema())  # any well-formed sensor name
    jsonschema.validate(event, event_json_schema(["vision", "text", "wrist"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, event_json_schema(["vision", "text", "radar"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "modality": "x" * 65}, event_json_schema())


def test_stream_config_consumes_bound_sensors_with_their_tower_windows() -> None:
    from streambind.stream.config import StreamConfig

    cfg = StreamConfig(modalities=("imu",), bound={"wrist": WRIST}, hop_ms={"wrist": 500})
    assert cfg.modality_of() == {"sensors.imu": "imu", "sensors.wrist": "wrist"}
    spec = cfg.window_spec("wrist")
    assert (spec.modality, spec.size_ns, spec.hop_ns) == ("audio", 2 * S, S // 2)
    with pytest.raises(ConfigError):
        StreamConfig(bound={"radar": WRIST})  # the key must be the tower's name
    with pytest.raises(ConfigError):
        StreamConfig(modalities=("imu",), bound={"wrist": WRIST},
                     topics={"wrist": "sensors.imu"})


def test_named_windower_keys_windows_by_the_sensor() -> None:
    from streambind.stream.config import StreamConfig

    cfg = StreamConfig(modalities=("imu",), bound={"wrist": WRIST})
    windower = custom.NamedWindower("wrist", cfg.window_spec("wrist"))
    t0 = aligned_origin_ns()
    for k, rec in enumerate(series_records("dev", t0, 4.0)):
        chunks = custom.decode_bound("wrist", rec.key, rec.value, rec.headers, partition=0,
                                     offset=k, now_ns=time.time_ns())
        result = windower.add(chunks[0])
        assert {key.modality for key in result.keys} == {"wrist"}
    closed = windower.flush()
    assert [(w.modality, w.start_ns - t0) for w in closed if w.outcome == "ok"] == [
        ("wrist", 0), ("wrist", S), ("wrist", 2 * S)]
    x = custom.featurize_bound("wrist", [custom.BoundInput(closed[0])])
    assert x.shape == (1, 3, 100)


# --------------------------------------------------------------------------- broker


@pytest.fixture
def bound_dir(tmp_path):
    """The tiny base (vision, text) plus an untrained ``wrist`` series tower."""
    from streambind.model import load_imagebind
    from streambind.model.bound import save_bound_model

    model = load_imagebind("tiny", modalities=("vision", "text"))
    model.add_tower(WRIST)
    return save_bound_model(model.eval(), tmp_path / "bound", base="tiny")


@pytest.mark.broker
def test_run_core_labels_a_bound_sensor_and_dead_letters_its_bad_records(
        bootstrap, make_topic, bound_dir) -> None:
    from streambind.serve.embedder import ModelRunner
    from streambind.serve.events import LabelledEventSink
    from streambind.serve.registry import LabelRegistry
    from streambind.stream.config import StreamConfig
    from streambind.stream.ids import event_id
    from streambind.stream.runner import StreamRunner

    embedder = ModelRunner({"source": str(bound_dir)})
    assert "wrist" in embedder.modalities
    topics = {"imu": make_topic("sensors.imu"), "wrist": make_topic("sensors.wrist")}
    cfg = StreamConfig(
        bootstrap=bootstrap, group_id=f"g-{topics['wrist']}", modalities=("imu",),
        bound={"wrist": WRIST}, topics=topics, hop_ms={"wrist": 1000},
        events_topic=make_topic("streambind.events"), dlq_topic=make_topic("streambind.dlq"),
        embeddings_topic=make_topic("streambind.embeddings"), idle_timeout_s=1.0,
        session_timeout_ms=2000, commit_interval_s=0.2, model=embedder.model_name)
    registry = LabelRegistry(embedder.embed_texts, bound=("wrist",))
    registry.update(LabelSet.from_dict({"name": "wear", "version": 1, "labels": [
        {"name": "shaking", "modalities": ["wrist"]}, {"name": "still"},
        {"name": "dark", "modalities": ["vision"]}]}))
    sink = LabelledEventSink(cfg, registry, fusion=False)
    t0 = aligned_origin_ns()
    bad = bad_wrist_records("dev-a", t0 + S)
    send_records(bootstrap, [(topics["wrist"], r) for r in series_records("dev-a", t0, 6.0)]
                 + [(topics["wrist"], r) for r in bad.values()])

    runner = StreamRunner(cfg, embedder, sink, model=embedder.model_name).start()
    try:
        events = [json.loads(r.value) for r in read_topic(
            bootstrap, cfg.events_topic, until=lambda rs: len(rs) >= 5, timeout_s=90)]
        dlq = read_topic(bootstrap, cfg.dlq_topic, until=lambda rs: len(rs) >= len(bad),
                         timeout_s=30)
    finally:
        runner.stop()
    assert runner.error is None
    # 6 s of 2 s windows with a 1 s hop: starts 0..4 s, one event each (threshold 0).
    assert sorted(e["window_start_ns"] - t0 for e in events) == [k * S for k in range(5)]
    schema = event_json_schema(embedder.modalities)
    for e in events:
        jsonschema.validate(e, schema)
        assert e["modality"] == "wrist" and e["model"] == embedder.model_name
        assert {lab["label"] for lab in e["labels"]} <= {"shaking", "still"}
        assert e["event_id"] == event_id("dev-a", "wrist", e["window_start_ns"],
                                         e["window_end_ns"], "wear", 1, embedder.model_name)
    reasons = sorted(dict(r.headers)["error.reason"].decode() for r in dlq)
    assert reasons == sorted(bad)
    assert {dict(r.headers)["source.topic"].decode() for r in dlq} == {topics["wrist"]}
