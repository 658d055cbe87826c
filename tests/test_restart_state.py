"""Which side-topic restart document goes with a committed offset, from a table."""

from __future__ import annotations

import pytest

from streambind.stream.restart import pick_state

OLD = {"offset": 40, "wm": 1}
COMMITTED = {"offset": 80, "wm": 2}
AHEAD = {"offset": 120, "wm": 3}  # written before a commit that did not happen (or aborted)


@pytest.mark.parametrize(
    ("docs", "committed", "exact", "expected"),
    [
        ([], 80, False, {}),
        ([OLD, COMMITTED], 80, False, COMMITTED),
        ([OLD, COMMITTED, AHEAD], 80, False, AHEAD),  # at least once: ahead is safe
        ([OLD], 80, False, {}),  # older than the commit: not its state
        ([COMMITTED], None, False, COMMITTED),  # nothing committed yet
        ([OLD, COMMITTED, AHEAD], 80, True, COMMITTED),  # exactly once: the committed one
        ([OLD, AHEAD], 80, True, {}),
        ([COMMITTED, {"offset": "x"}], 80, True, COMMITTED),  # unreadable offsets skipped
        ([{"offset": "x"}], 80, False, {}),
    ],
)
def test_pick_state(docs, committed, exact, expected):
    assert pick_state(docs, committed, exact) == expected


# -- the per-device document ---------------------------------------------------------

import json  # noqa: E402

import numpy as np  # noqa: E402
from kafka import TopicPartition  # noqa: E402

from streambind.serve.label_state import LabelState  # noqa: E402
from streambind.stream.chunks import SensorChunk  # noqa: E402
from streambind.stream.commit import Committer  # noqa: E402
from streambind.stream.config import StreamConfig  # noqa: E402
from streambind.stream.partition import PartitionState  # noqa: E402
from streambind.stream.restart import decode_doc, encode_doc  # noqa: E402
from streambind.stream.windows import DeviceRestart, WindowSpec  # noqa: E402

MS = 1_000_000
TP = TopicPartition("sensors.audio", 0)


class LabelStateSink:
    """The restart-state half of a WindowSink, on the serving side's real hysteresis store."""

    def __init__(self) -> None:
        self.state = LabelState()

    def restart_state(self, device_id, modality, through_end_ns):  # noqa: ANN001, ANN201
        return self.state.snapshot(device_id, modality, through_end_ns)

    def restore_state(self, device_id, modality, state):  # noqa: ANN001, ANN201
        self.state.restore(device_id, modality, state)


def _chunk(device, ts_ms, offset):  # noqa: ANN001, ANN202
    return SensorChunk("audio", device, ts_ms * MS, (ts_ms + 100) * MS, ts_ms,
                       np.zeros(4, np.float32), 16000.0, None, 0, offset)


def test_documents_round_trip_and_the_old_form_is_read():
    states = {"a": DeviceRestart(5, 9, (1, 2), 7, {"x": 1}), "b": DeviceRestart(None, 3)}
    doc = json.loads(json.dumps(encode_doc(states)))
    assert decode_doc(doc) == ({"a": states["a"], "b": DeviceRestart(None, 3, (), 3)}, None)
    legacy = {"wm": 100, "dev": {"a": 150}}
    assert decode_doc(legacy) == ({"a": DeviceRestart(100, 150)}, 100)
    assert decode_doc({"v": 2, "dev": {"a": {"wm": "x"}, "b": {"thr": 4}}})[0] == {
        "b": DeviceRestart(None, 4, (), 4)}  # an unreadable device entry is skipped
    assert decode_doc({"v": 2, "dev": [1]}) == ({}, None)


def test_sink_state_travels_with_the_commit_and_is_restored_per_device():
    spec = WindowSpec("audio", size_ns=1000 * MS, hop_ns=1000 * MS, allowed_lateness_ns=0)
    sink = LabelStateSink()
    part = PartitionState.restored(TP, spec, lambda: 0.0, None, sink=sink)
    offset = 0
    for ts in range(0, 3100, 100):
        for device in ("a", "b"):
            part.tracker.consumed(0, offset, part.windower.add(_chunk(device, ts, offset)).keys)
            offset += 1
        for window in part.windower.poll():  # "published": hysteresis state recorded
            on = frozenset({"dog"} if window.start_ns == 1000 * MS else set())
            sink.state.record(window.device_id, "audio", window.end_ns, {"home": (1, on)})
            if window.end_ns <= 2000 * MS:  # acknowledged; [2000, 3000) is still in flight
                part.tracker.released(window.key)
    doc = json.loads(json.dumps(part.restart_doc()))
    assert doc["v"] == 2 and set(doc["dev"]) == {"a", "b"}
    entry = doc["dev"]["a"]
    # [2000, 3000) is closed but not acknowledged: rebuilt by a replay, and the sink's state
    # is the one right after [1000, 2000) ("dog" on), not after the in-flight window (off).
    assert entry["wm"] == 3000 * MS - 1 and entry["thr"] == 3000 * MS
    assert entry["re"] == [2000 * MS] and entry["st"] == 3000 * MS - 1
    assert entry["sink"]["label_sets"] == {"home": {"version": 1, "on": ["dog"]}}
    fresh = LabelStateSink()
    restored = PartitionState.restored(TP, spec, lambda: 0.0, doc, sink=fresh)
    assert fresh.state.on_before("a", "audio", "home", 1) == frozenset({"dog"})
    assert restored.windower.watermark_ns("b") == 3000 * MS - 1


def test_a_document_too_large_for_the_metadata_goes_to_the_state_topic():
    spec = WindowSpec("audio", size_ns=1000 * MS, hop_ns=1000 * MS, allowed_lateness_ns=0)
    part = PartitionState.restored(TP, spec, lambda: 0.0)
    for i in range(200):
        part.tracker.consumed(0, i, part.windower.add(_chunk(f"device-{i:03d}", 0, i)).keys)
    small = Committer(StreamConfig(max_commit_metadata_bytes=10**6), producer=None)
    (om,) = small.offsets({TP: part}).values()
    assert len(json.loads(om.metadata)["dev"]) == 200
    committer = Committer(StreamConfig(), producer=None)  # 4000 bytes: too small
    (om,) = committer.offsets({TP: part}).values()
    assert json.loads(om.metadata) == {"v": 2, "side": 1}
    no_topic = Committer(StreamConfig(state_topic=None), producer=None)
    (om,) = no_topic.offsets({TP: part}).values()
    assert json.loads(om.metadata) == {"v": 2, "dev": {}}  # dropped, with a warning
