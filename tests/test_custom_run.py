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

from streambind.errors import ConfigError, RecordError
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


def test_a_frame_sensor_is_windowed_by_its_frame_nearest_the_middle() -> None:
    from streambind.model.kinds import FrameConfig
    from streambind.stream.config import StreamConfig

    radar = FrameConfig(name="radar", height_px=32, width_px=32, patch_px=16, window_s=2.0,
                        width=32, depth=1, heads=4, logit_scale=5.0)
    cfg = StreamConfig(modalities=("imu",), bound={"radar": radar})
    spec = cfg.window_spec("radar")
    assert spec.modality == "depth" and spec.size_ns == 2 * S
    windower = custom.NamedWindower("radar", spec)
    t0 = aligned_origin_ns()
    for k in range(8):  # 4 fps; frame k is filled with the value k
        img = np.full((8, 12), k, np.uint16)
        img[0, 0] = 0  # some contrast: min-max scaling keeps the frame's pattern
        value = custom.encode_frame("dev", t0 + k * S // 4, k, img)
        for chunk in custom.decode_bound("radar", b"dev", value, custom.headers("frame"),
                                         partition=0, offset=k, now_ns=time.time_ns()):
            windower.add(chunk)
    with pytest.raises(RecordError) as err:  # a series record on a frame sensor's topic
        custom.decode_bound("radar", b"dev", series_records("dev", t0, 0.5)[0].value,
                            custom.headers("series"), partition=0, offset=9,
                            now_ns=time.time_ns())
    assert err.value.reason == "bad_schema"
    closed = [w for w in windower.flush() if w.outcome == "ok"]
    assert [(w.modality, w.start_ns - t0) for w in closed][:1] == [("radar", 0)]
    x = custom.featurize_bound("radar", [custom.BoundInput(closed[0])])
    assert x.shape == (1, 1, 32, 32) and float(x.max()) == pytest.approx(1.0)


def test_eval_labels_file_is_read_strictly_and_labels_windows_by_majority(tmp_path) -> None:
    from streambind.bind.eval_stream import read_truth, window_activity

    path = tmp_path / "truth.jsonl"
    path.write_text('{"device_id": "d", "start_ns": 0, "end_ns": 3, "activity": "walk"}\n'
                    '{"device_id": "d", "start_ns": 3, "end_ns": 10, "activity": "run"}\n')
    segments = read_truth(path)
    assert window_activity(segments, "d", 0, 10) == "run"
    assert window_activity(segments, "d", 0, 4) == "walk"
    assert window_activity(segments, "d", 8, 20) is None  # mostly unlabelled
    assert window_activity(segments, "other", 0, 10) is None
    path.write_text('{"device_id": "d", "start_ns": 5, "end_ns": 1, "activity": "x"}\n')
    with pytest.raises(ConfigError, match=":1:"):
        read_truth(path)
    path.write_text('{"device_id": "d"}\n')
    with pytest.raises(ConfigError, match="not a labels line"):
        read_truth(path)


# --------------------------------------------------------------------------- broker


@pytest.fixture
def bound_dir(tmp_path):
    """The tiny base (vision, text) plus an untrained ``wrist`` series tower."""
    from streambind.model import load_imagebind
    from streambind.model.bound_write import save_bound_model

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


# --------------------------------------------------------------------------- end to end


def world_sensor_records(t0: int, devices: int, duration_s: float, seed: int, camera: str,
                         wrist: str) -> tuple[list[tuple[str, Record]], list[tuple]]:
    """The world's devices: camera frames on ``camera`` and, on ``wrist``, a ``series``
    sensor that is none of the six: a band reporting the magnitudes of the wearer's
    acceleration and rotation rate (2 channels, the IMU's rate; orientation-free, so a
    device's fixed mounting cannot stand in for what it measures). Returns the records and
    the ground truth ``(device, start_ns, end_ns, activity)`` segments."""
    import pyarrow as pa

    from streambind.sim.simulator import SimStats, stream

    stats = SimStats()
    out = []
    for _, _, topic, rec in stream(devices, duration_s, modalities=("vision", "imu"),
                                   drop_share=0.0, reorder_share=0.0, seed=seed, start_ns=t0,
                                   stats=stats):
        if topic == "sensors.vision":
            out.append((camera, rec))
            continue
        cols = pa.ipc.open_stream(rec.value).read_all().to_pydict()
        ts = cols["ts_ns"]
        rate_hz = round(S / ((ts[-1] - ts[0]) / (len(ts) - 1)))  # 100, 200 or 400 Hz
        acc = np.stack([cols[c] for c in ("acc_x", "acc_y", "acc_z")], axis=1)
        gyro = np.stack([cols[c] for c in ("gyro_x", "gyro_y", "gyro_z")], axis=1)
        data = np.stack([np.linalg.norm(acc, axis=1), np.linalg.norm(gyro, axis=1)],
                        axis=1).astype(np.float32)  # (N, 2)
        device = rec.key.decode()
        value = custom.encode_series(device, [ts[0]], [cols["seq"][0]], rate_hz, [data])
        out.append((wrist, Record(rec.key, value, custom.headers("series"))))
    return out, list(stats.activities)


def truth_of(truth: list[tuple], device: str, start_ns: int, end_ns: int) -> str | None:
    """The activity that covers most of ``[start_ns, end_ns)`` on ``device``."""
    best, best_overlap = None, 0
    for dev, s, e, activity in truth:
        overlap = min(e, end_ns) - max(s, start_ns)
        if dev == device and overlap > best_overlap:
            best, best_overlap = activity, overlap
    return best


def world_labels(modalities: list[str]) -> dict:
    """A label set of every world activity, with the world's prompts."""
    from streambind.world.activities import ACTIVITIES

    return {"name": "world", "version": 1, "labels": [
        {"name": a.name, "prompts": list(a.prompts), "modalities": modalities}
        for a in ACTIVITIES]}


@pytest.mark.broker
@pytest.mark.ray
def test_bind_a_series_sensor_then_run_labels_it_far_above_chance(
        bootstrap, make_topic, world_cache, tmp_path, capsys) -> None:
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from streambind.cli import main
    from streambind.model import load_imagebind
    from streambind.world.activities import ACTIVITY_NAMES

    cache, _, _ = world_cache
    clock = {"start": time.monotonic()}

    def lap(what: str) -> None:
        with capsys.disabled():
            print(f"\n[custom-run] {what}: {time.monotonic() - clock['start']:.0f} s")

    # 30 s time blocks, every 5th validates: t0 starts block 1 (mod 5), so the 3 blocks of a
    # 90 s recording all train (the held-out measure is the later recording below).
    t0 = aligned_origin_ns(ago_s=3 * 3600, align_s=150) + 30 * S
    cam_train, wrist_train = make_topic("sensors.vision"), make_topic("sensors.wrist")
    records, _ = world_sensor_records(t0, 8, 90, 1, cam_train, wrist_train)
    send_records(bootstrap, records)
    lap("training recording published")

    out = tmp_path / "wrist-model"
    argv = ["bind", "--bootstrap", bootstrap, "--modality", "wrist", "--kind", "series",
            "--base", "world", "--cache-dir", str(cache), "--out", str(out),
            "--topic", wrist_train, "--camera-topic", cam_train, "--sample-rate-hz", "100",
            "--steps", "200", "--batch-size", "32", "--block-s", "30",
            "--storage", str(tmp_path / "ray"), "--timeout-s", "120"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lap(f"bound: {report['pairs']} pairs, val R@1 {report['val_R@1']}")

    # A later, unseen recording (other rooms and scripts: another seed) for run to label.
    t1 = t0 + 3600 * S
    cam_eval, wrist_eval = make_topic("sensors.vision"), make_topic("sensors.wrist")
    records, truth = world_sensor_records(t1, 2, 100, 2, cam_eval, wrist_eval)
    bad = bad_wrist_records("dev-000", t1 + 7 * S)
    send_records(bootstrap, records + [(wrist_eval, r) for r in bad.values()])
    lap("evaluation recording published")

    events_topic, dlq_topic = make_topic("streambind.events"), make_topic("streambind.dlq")
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps(world_labels(["wrist"])))
    config_file = tmp_path / "streambind.yaml"
    config_file.write_text(yaml.safe_dump({
        "stream": {"modalities": ["imu"],  # an empty topic: only the bound sensor speaks
                   "topics": {"imu": make_topic("sensors.imu"), "wrist": wrist_eval},
                   "events_topic": events_topic, "dlq_topic": dlq_topic,
                   "publish_embeddings": False, "idle_timeout_s": 1.0},
        "labels": {"topic": make_topic("streambind.labels")},
        "embedder": {"num_cpus": 0.5}, "ingest": {"num_cpus": 0.5},
        "metrics": {"port": 19370}}))
    cmd = [sys.executable, "-m", "streambind", "run", "--bootstrap", bootstrap,
           "--model", str(out), "--labels", str(labels_file), "--config", str(config_file),
           "--group", f"run-{wrist_eval}", "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    expected = 2 * (100 // 2.5 - 1)  # 5 s windows, 2.5 s hop, per device
    try:
        events = [json.loads(r.value) for r in read_topic(
            bootstrap, events_topic, until=lambda rs: len(rs) >= expected, timeout_s=240)]
        dlq = read_topic(bootstrap, dlq_topic, until=lambda rs: len(rs) >= len(bad),
                         timeout_s=30)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            log, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
    lap(f"run: {len(events)} events")
    assert len(events) >= expected, log[-3000:]
    model = load_imagebind(str(out))
    schema = event_json_schema(model.modalities)  # the names this model declares
    hits = []
    for e in events:
        jsonschema.validate(e, schema)
        assert e["modality"] == "wrist" and e["model"] == "wrist-model"
        want = truth_of(truth, e["device_id"], e["window_start_ns"], e["window_end_ns"])
        hits.append(e["labels"][0]["label"] == want)
    top1 = float(np.mean(hits))
    assert sorted(dict(r.headers)["error.reason"].decode() for r in dlq) == sorted(bad)

    # `streambind eval` on the same recording and labels: the same windows and scores as
    # run, beside chance (the majority class) and the untrained tower of the same config.
    truth_file = tmp_path / "truth.jsonl"
    truth_file.write_text("".join(json.dumps(dict(zip(
        ("device_id", "start_ns", "end_ns", "activity"), row, strict=True))) + "\n"
        for row in truth))
    assert main(["eval", "--model", str(out), "--modality", "wrist", "--bootstrap", bootstrap,
                 "--topic", wrist_eval, "--truth", str(truth_file), "--labels",
                 str(labels_file), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stream"][0]
    uniform, majority = 1 / len(ACTIVITY_NAMES), ev["chance"]
    lap(f"run top-1 {top1:.3f} on {len(events)} windows; eval top-1 {ev['top1']:.3f} "
        f"(chance {uniform:.3f}, majority class {majority:.3f}, untrained tower "
        f"{ev['untrained_top1']:.3f}; {json.dumps(ev['per_class'])})")
    assert ev["n"] == len(events) and ev["top1"] == pytest.approx(top1, abs=1.5 / len(events))
    assert top1 > 3 * uniform  # 12 activities
    assert top1 > majority  # better than the best constant guess of this recording
    assert top1 > 2 * ev["untrained_top1"]
