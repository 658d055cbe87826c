"""Labelled events from embedded windows: schema, thresholds, fusion, deterministic ids."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import torch

from streambind.labels import LabelSet
from streambind.serve.events import FusionBuffer, LabelledEventSink
from streambind.serve.registry import LabelRegistry
from streambind.stream.config import StreamConfig
from streambind.stream.sinks import EmbeddedWindow
from streambind.stream.windows import ClosedWindow, WindowKey

SCHEMA = json.loads((Path(__file__).parents[1] / "schemas" / "event.schema.json").read_text())
S = 1_000_000_000
LABELS = {
    "name": "home",
    "version": 4,
    "labels": [
        {"name": "dog", "prompts": ["dog"], "threshold": 0.0},
        {"name": "cat", "prompts": ["cat"], "threshold": 0.0, "modalities": ["audio", "fused"]},
    ],
}
TEXT = {"dog": torch.tensor([1.0, 0.0, 0.0]), "cat": torch.tensor([0.0, 1.0, 0.0])}


def fake_text_tower(texts):
    # Every template of "dog" maps near the dog axis; enough to check the plumbing.
    return torch.stack([TEXT["dog"] if "dog" in t else TEXT["cat"] for t in texts])


def embedded(modality, start_s, end_s, vector, device="d1"):
    window = ClosedWindow(
        key=WindowKey(device, modality, start_s * S, end_s * S),
        partition=0,
        chunks=(),
        coverage=1.0,
        gaps_ns=(),
        gap_filled=False,
        outcome="ok",
        closed_by="watermark",
    )
    return EmbeddedWindow(window, np.asarray(vector, dtype=np.float32), "imagebind_tiny_untrained")


def make_sink(fusion=True):
    registry = LabelRegistry(fake_text_tower)
    registry.update(LabelSet.from_dict(LABELS))
    config = StreamConfig(bootstrap="unused:9092", publish_embeddings=False)
    return LabelledEventSink(config, registry, fusion=fusion)


def test_events_match_the_schema_and_rank_labels():
    sink = make_sink()
    (event,) = sink.events(embedded("audio", 0, 2, [0.9, 0.1, 0.0]))
    jsonschema.validate(event, SCHEMA)
    assert event["modality"] == "audio" and event["label_set_version"] == 4
    assert [label["label"] for label in event["labels"]] == ["dog", "cat"]
    assert event["labels"][0]["score"] > 0.99  # softmax at CLIP's temperature
    # imu has only "dog" (cat is limited to audio and fused).
    (imu_event,) = make_sink().events(embedded("imu", 0, 5, [0.0, 1.0, 0.0]))
    assert [label["label"] for label in imu_event["labels"]] == ["dog"]


def test_event_ids_are_deterministic_across_sinks():
    first = make_sink().events(embedded("audio", 4, 6, [0.2, 0.9, 0.1]))
    again = make_sink().events(embedded("audio", 4, 6, [0.2, 0.9, 0.1]))
    other = make_sink().events(embedded("audio", 5, 7, [0.2, 0.9, 0.1]))
    assert first[0]["event_id"] == again[0]["event_id"] != other[0]["event_id"]


def test_fusion_combines_overlapping_windows_of_other_modalities():
    sink = make_sink()
    assert len(sink.events(embedded("audio", 0, 2, [0.0, 1.0, 0.0]))) == 1  # nothing to fuse
    events = sink.events(embedded("vision", 1, 3, [1.0, 0.0, 0.0]))
    fused = [e for e in events if e["modality"] == "fused"]
    assert len(fused) == 1
    jsonschema.validate(fused[0], SCHEMA)
    assert fused[0]["fused_from"] == ["audio", "vision"]
    assert (fused[0]["window_start_ns"], fused[0]["window_end_ns"]) == (1 * S, 3 * S)
    # Another device's windows never fuse with d1's.
    other_device = sink.events(embedded("imu", 0, 5, [1, 0, 0], "d2"))
    assert all(e["modality"] != "fused" for e in other_device)


def test_fusion_buffer_picks_most_overlapping_window_and_forgets_old_ones():
    buffer = FusionBuffer(horizon_ns=10 * S)
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    assert buffer.add_and_fuse("d", "audio", 0, 2 * S, a) is None
    assert buffer.add_and_fuse("d", "audio", 1 * S, 3 * S, b) is None
    fused, modalities = buffer.add_and_fuse("d", "imu", int(1.5 * S), int(6.5 * S), a)
    assert modalities == ["audio", "imu"]
    torch.testing.assert_close(fused, torch.tensor([1.0, 1.0]) / 2**0.5)  # audio [1,3) won
    buffer.add_and_fuse("d", "vision", 40 * S, 42 * S, a)
    assert buffer.add_and_fuse("d", "thermal", 0, 2 * S, b) is None  # all older than horizon


def test_single_label_detector_with_cosine_scoring_stays_quiet_below_threshold():
    registry = LabelRegistry(fake_text_tower)
    detector = [{"name": "dog", "prompts": ["dog"], "threshold": 0.5}]
    strict = {**LABELS, "scoring": "cosine", "labels": detector}
    registry.update(LabelSet.from_dict(strict))
    sink = LabelledEventSink(StreamConfig(bootstrap="unused:9092"), registry)
    assert sink.events(embedded("audio", 0, 2, [0.0, 1.0, 0.0])) == []
    (event,) = sink.events(embedded("audio", 2, 4, [1.0, 0.2, 0.0]))
    assert event["labels"][0]["label"] == "dog" and 0.95 < event["labels"][0]["score"] < 1
