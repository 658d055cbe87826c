"""Hysteresis state in restart state: a replay from a restored state gives identical labels."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from streambind.labels import LabelSet
from streambind.serve.events import LabelledEventSink
from streambind.serve.label_state import LabelState
from streambind.serve.registry import LabelRegistry
from streambind.stream.config import StreamConfig
from streambind.stream.sinks import EmbeddedWindow
from streambind.stream.windows import ClosedWindow, WindowKey

S = 1_000_000_000
# Cosine scoring makes each score a direct function of the window embedding; thresholds
# above 0 and a wide hysteresis margin make the labels depend on the previous window.
LABELS = {
    "name": "home",
    "version": 7,
    "scoring": "cosine",
    "hysteresis": 0.2,
    "labels": [
        {"name": "dog", "prompts": ["dog"], "threshold": 0.5, "modalities": ["audio", "fused"]},
        {"name": "cat", "prompts": ["cat"], "threshold": 0.9, "modalities": ["audio", "fused"]},
    ],
}
DOG_SCORES = [0.6, 0.45, 0.4, 0.35, 0.45, 0.25, 0.4, 0.55, 0.42, 0.2, 0.45, 0.38]


def tower(texts: list[str]) -> torch.Tensor:
    return torch.stack([torch.tensor([1.0, 0.0, 0.0]) if "dog" in t
                        else torch.tensor([0.0, 1.0, 0.0]) for t in texts])


def windows(device: str = "mic-1") -> list[EmbeddedWindow]:
    out = []
    for k, dog in enumerate(DOG_SCORES):
        window = ClosedWindow(key=WindowKey(device, "audio", k * S, (k + 2) * S), partition=0,
                              chunks=(), coverage=1.0, gaps_ns=(), gap_filled=False,
                              outcome="ok", closed_by="watermark")
        vector = np.array([dog, math.sqrt(1 - dog * dog), 0.0], dtype=np.float32)
        out.append(EmbeddedWindow(window, vector, "imagebind_tiny_untrained"))
    return out


def make_sink(version: int = 7) -> LabelledEventSink:
    registry = LabelRegistry(tower)
    registry.update(LabelSet.from_dict({**LABELS, "version": version}))
    return LabelledEventSink(StreamConfig(bootstrap="unused:9092"), registry, fusion=False)


def comparable(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "emitted_at_ns"} for e in events]


def run(sink: LabelledEventSink, items: list[EmbeddedWindow]) -> list[list[dict]]:
    return [comparable(sink.events(item)) for item in items]


def test_replaying_from_restored_state_gives_identical_labels():
    items = windows()
    first = make_sink()
    original = run(first, items)
    cut = 3  # the consumer restarts after the 3rd window (end at 4 s) was committed
    through_end_ns = items[cut - 1].window.end_ns
    state = first.restart_state("mic-1", "audio", through_end_ns)
    state = json.loads(json.dumps(state))  # it travels as JSON in the restart document
    assert state == {"end_ns": through_end_ns,
                     "label_sets": {"home": {"version": 7, "on": ["cat", "dog"]}}}

    restored = make_sink()
    restored.restore_state("mic-1", "audio", state)
    assert run(restored, items[cut:]) == original[cut:]

    # Without the state the replay differs: the test exercises the hysteresis.
    fresh = make_sink()
    assert run(fresh, items[cut:]) != original[cut:]


def test_every_cut_point_replays_identically():
    items = windows()
    first = make_sink()
    original = run(first, items)
    for cut in range(1, len(items)):
        state = first.restart_state("mic-1", "audio", items[cut - 1].window.end_ns)
        restored = make_sink()
        restored.restore_state("mic-1", "audio", json.loads(json.dumps(state)))
        assert run(restored, items[cut:]) == original[cut:], cut


def test_restart_state_is_as_of_the_last_window_ending_by_the_mark():
    items = windows()
    sink = make_sink()
    run(sink, items[:4])
    assert sink.restart_state("mic-1", "audio", items[0].window.end_ns - 1) is None
    assert sink.restart_state("mic-2", "audio", 10**20) is None
    between = sink.restart_state("mic-1", "audio", items[2].window.end_ns + S // 2)
    at_end = sink.restart_state("mic-1", "audio", items[2].window.end_ns)
    assert between["label_sets"] == at_end["label_sets"]
    assert between["end_ns"] == items[2].window.end_ns + S // 2
    # A new version of the set starts with every label off, whatever the old state was.
    newer = make_sink(version=8)
    newer.restore_state("mic-1", "audio", between)
    assert run(newer, items[3:]) == run(make_sink(version=8), items[3:])
    older = make_sink()
    older.restore_state("mic-1", "audio", between)
    assert run(older, items[3:]) != run(make_sink(), items[3:])  # the state mattered


def test_unusable_restored_state_is_ignored():
    items = windows()
    for doc in ({}, {"end_ns": "x", "label_sets": {}}, {"end_ns": 1, "label_sets": []},
                {"end_ns": 1, "label_sets": {"home": {"version": 7, "on": [1]}}},
                {"end_ns": 1, "label_sets": {"home": {"version": 7, "on": ["a"] * 5000}}}):
        sink = make_sink()
        sink.restore_state("mic-1", "audio", doc)  # no exception: starts from nothing
        assert run(sink, items[5:]) == run(make_sink(), items[5:])


def test_history_is_bounded_and_keeps_the_base_state():
    state = LabelState(history_changes=4, horizon_ns=10 * S)
    for k in range(100):
        state.record("d", "audio", k * S, {"s": (1, frozenset({"on"} if k % 2 else set()))})
    assert len(state._streams[("d", "audio")].changes) <= 4
    assert state.snapshot("d", "audio", 98 * S)["label_sets"]["s"]["on"] == []
    assert state.snapshot("d", "audio", 99 * S)["label_sets"]["s"]["on"] == ["on"]
    assert state.snapshot("d", "audio", 10 * S) is None  # older than what is kept
    stable = LabelState(history_changes=4, horizon_ns=10 * S)
    for k in range(100):  # a stable stream costs one entry, and every mark is answered
        stable.record("d", "audio", k * S, {"s": (1, frozenset({"on"}))})
    assert len(stable._streams[("d", "audio")].changes) == 1
    assert stable.snapshot("d", "audio", 50 * S)["label_sets"]["s"]["on"] == ["on"]
