"""The demo's pieces that run without a cluster: model choice and the live table."""

import io

from streambind.demo import DEMO_LABELS, EventTable, choose_model
from streambind.labels import LabelSet

S = 1_000_000_000


def test_without_cached_weights_the_demo_says_it_runs_the_untrained_tiny_model(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("STREAMBIND_CACHE", str(tmp_path))
    out = io.StringIO()
    assert choose_model(None, out) == "tiny"
    assert "UNTRAINED tiny model" in out.getvalue() and str(tmp_path) in out.getvalue()
    (tmp_path / "imagebind_huge.pth").write_bytes(b"present")
    assert choose_model(None, io.StringIO()) == "huge"
    assert choose_model("tiny", io.StringIO()) == "tiny"


def test_table_keeps_the_latest_event_per_device_and_modality():
    table = EventTable()
    for start_s, label in ((0, "music"), (1, "dog barking")):
        table.add({"device_id": "cam-1", "modality": "audio", "window_end_ns": (start_s + 2) * S,
                   "labels": [{"label": label, "score": 0.5}]})
    table.add({"device_id": "cam-2", "modality": "imu", "window_end_ns": 5 * S, "labels": []})
    text = table.render("header")
    assert text.startswith("header\n3 events")
    assert "dog barking 0.50" in text and "music" not in text
    assert text.index("cam-1") < text.index("cam-2")


def test_demo_labels_are_a_valid_label_set():
    assert len(LabelSet.from_dict(DEMO_LABELS).labels) == 7
