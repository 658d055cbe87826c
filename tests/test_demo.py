"""`streambind demo`: the live table, scoring against the ground truth, and the command itself.

The last test runs `streambind demo` with no flags, as a user would (a subprocess in its
own session, the model cache pointed at the session's world model), waits for events and
scored windows on its output, then presses Ctrl-C (SIGINT to the process group) and checks
that it stops with exit code 0, no traceback and no process left behind.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streambind.demo import EventTable, choose_model, demo_label_set, prepare_model
from streambind.labels import LabelSet
from streambind.world.activities import ACTIVITY_NAMES
from streambind.world.truth import Accuracy, Segment, TruthFollower, TruthIndex, controls

S = 1_000_000_000


def event(device="dev-000", modality="audio", start_s=0.0, end_s=2.0, label="walking",
          event_id=None):
    return {"event_id": event_id or f"{device}/{modality}/{start_s}", "device_id": device,
            "modality": modality, "window_start_ns": round(start_s * S),
            "window_end_ns": round(end_s * S), "labels": [{"label": label, "score": 0.9}]}


def truth(*rows):
    return TruthIndex(Segment("dev-000", round(a * S), round(b * S), act) for a, b, act in rows)


def test_the_default_model_is_the_world_model_and_tiny_says_its_labels_mean_nothing(tmp_path):
    assert choose_model(None) == "world" and choose_model("tiny") == "tiny"
    out = io.StringIO()
    assert prepare_model("tiny", str(tmp_path), out, threading.Event())
    assert "UNTRAINED" in out.getvalue() and "not meaningful" in out.getvalue()
    out = io.StringIO()
    assert not prepare_model("huge", str(tmp_path), out, threading.Event())  # not cached
    assert "streambind.model.download" in out.getvalue()


def test_a_missing_world_model_is_trained_with_a_notice_and_ctrl_c_cancels_it(tmp_path):
    stop = threading.Event()
    stop.set()  # Ctrl-C right away: the training subprocess is stopped, nothing is cached
    out = io.StringIO()
    assert not prepare_model("world", str(tmp_path), out, stop)
    assert "not in the cache yet" in out.getvalue() and str(tmp_path) in out.getvalue()
    assert "training cancelled" in out.getvalue()
    assert not (tmp_path / "world" / "manifest.json").exists()


def test_demo_label_set_is_the_worlds_activities():
    labels = LabelSet.from_dict(demo_label_set())
    assert [label.name for label in labels.labels] == list(ACTIVITY_NAMES)


def test_window_truth_needs_one_activity_over_most_of_the_window():
    index = truth((0, 10, "walking"), (10, 20, "glass breaking"))
    assert index.window_activity("dev-000", 2 * S, 4 * S) == "walking"
    assert index.window_activity("dev-000", 9 * S, 11 * S) is None  # straddles
    assert index.window_activity("dev-000", round(9.9 * S), round(11.9 * S)) == "glass breaking"
    assert index.window_activity("dev-000", 25 * S, 27 * S) is None  # no truth
    assert index.window_activity("dev-001", 2 * S, 4 * S) is None
    assert index.activity_at("dev-000", 10 * S) == "glass breaking"


def test_accuracy_per_modality_waits_for_truth_and_counts_a_republished_id_once():
    index = truth((0, 10, "walking"))
    acc = Accuracy(index)
    acc.add(event(modality="audio", label="walking"))
    acc.add(event(modality="imu", start_s=0, end_s=5, label="running"))
    acc.add(event(modality="fused", label="running", event_id="f1"))
    acc.add(event(modality="fused", label="walking", event_id="f1"))  # more complete fusion
    acc.add(event(modality="audio", start_s=12, end_s=14, label="walking"))  # truth not yet
    report = acc.report()
    assert {k: report["audio"][k] for k in ("accuracy", "right", "scored", "ambiguous")} == {
        "accuracy": 1.0, "right": 1, "scored": 1, "ambiguous": 0}
    assert report["imu"]["accuracy"] == 0.0
    assert report["fused"]["scored"] == 1 and report["fused"]["accuracy"] == 1.0
    assert acc.pending == 1
    index.add(Segment("dev-000", 10 * S, 20 * S, "walking"))
    acc.settle()
    assert acc.pending == 0 and acc.report()["audio"]["scored"] == 2


def test_controls_are_the_majority_share_and_the_chance_agreement():
    # truth: 3 x walking, 1 x running; labels: always "walking"
    confusion = {("walking", "walking"): 3, ("running", "walking"): 1}
    assert controls(confusion) == {"majority_share": 0.75, "chance_agreement": 0.75}
    # labels unrelated to the windows: half walking, half running, on a 50/50 truth
    confusion = {("walking", "walking"): 1, ("walking", "running"): 1,
                 ("running", "walking"): 1, ("running", "running"): 1}
    assert controls(confusion) == {"majority_share": 0.5, "chance_agreement": 0.5}
    assert controls({}) == {"majority_share": None, "chance_agreement": None}


def test_truth_follower_reads_a_growing_file_line_by_line(tmp_path):
    path = tmp_path / "truth.jsonl"
    follower = TruthFollower(path)
    assert follower.poll() == 0  # not written yet
    line = json.dumps({"device_id": "d", "start_ns": 0, "end_ns": 5 * S, "activity": "walking"})
    with open(path, "w") as fh:
        fh.write(line + "\n" + line[:10])
        fh.flush()
        assert follower.poll() == 1  # the unfinished line waits
        fh.write(line[10:] + "\nnot json\n")
    assert follower.poll() == 1  # the rest of the line; the bad one is skipped
    follower.close()


def test_table_shows_truth_beside_labels_and_the_running_accuracy():
    table = EventTable(truth((0, 10, "walking")))
    for start_s, label in ((0, "running"), (1, "walking")):
        table.add(event(start_s=start_s, end_s=start_s + 2, label=label))
    table.add(event(device="dev-000", modality="imu", start_s=0, end_s=5, label="walking"))
    text = table.render("header")
    assert text.startswith("header\n3 events")
    audio_row = next(line for line in text.splitlines() if " audio " in line)
    assert "walking" in audio_row and " ok " in audio_row and "running" not in audio_row
    assert re.search(r"audio\s+0\.50\s+\(1/2 windows", text)
    assert re.search(r"imu\s+1\.00\s+\(1/1 windows", text)


# ------------------------------------------------------------------ the command itself


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, session id, start time) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent's wait is missing
    return int(fields[1]), int(fields[3]), int(fields[19])


def _processes() -> dict[int, tuple[int, int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            out[int(entry)] = st
    return out


def _descendants(root: int) -> dict[int, tuple[int, int, int]]:
    procs = _processes()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, st in procs.items():
            if st[0] == parent and pid not in found:
                found[pid] = st
                frontier.append(pid)
    return found


def _alive(pids: dict[int, tuple[int, int, int]]) -> list[int]:
    return [pid for pid, st in pids.items() if (now := _stat(pid)) is not None and now[2] == st[2]]


@pytest.mark.broker
@pytest.mark.ray
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_streambind_demo_with_no_flags_shows_events_and_stops_cleanly_on_ctrl_c(world_cache,
                                                                                signum):
    """Ctrl-C, or a closed terminal (SIGHUP), stops it and everything it started."""
    cache, _, _ = world_cache
    env = {**os.environ, "STREAMBIND_CACHE": str(cache), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambind", "demo"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    errors: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.extend(iter(s.readline, "")),
                                daemon=True)
               for s, b in ((proc.stdout, lines), (proc.stderr, errors))]
    for reader in readers:
        reader.start()
    t0 = time.monotonic()

    def seen(pattern: str) -> re.Match | None:
        return next((m for line in reversed(lines) if (m := re.search(pattern, line))), None)

    try:
        up_at = events_at = None
        deadline = t0 + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if up_at is None and seen(r"^pipeline up"):
                up_at = time.monotonic() - t0
            count = seen(r"^(\d+) events")
            scored = seen(r"^  audio\s+\d\.\d\d\s+\((\d+)/(\d+) windows")
            if count and int(count[1]) > 0 and events_at is None:
                events_at = time.monotonic() - t0
            if scored and int(scored[2]) >= 3:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "".join(lines[-40:] + errors[-40:])
        assert events_at is not None and scored, "".join(lines[-40:] + errors[-40:])
        print(f"pipeline up after {up_at:.0f} s, first events after {events_at:.0f} s "
              f"from the start of `streambind demo`")
        children = _descendants(proc.pid)
        assert len(children) >= 3  # at least the broker, the simulator and Ray's processes
        os.killpg(proc.pid, signum)  # the terminal signals the whole group
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for reader in readers:
        reader.join(10)
    output = "".join(lines) + "".join(errors)
    assert code == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert lines[-1].strip() == "stopped"
    # Nothing left: neither the processes it started nor anything in its session.
    deadline = time.monotonic() + 20
    while (left := _alive(children)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in left}
    assert not [pid for pid, st in _processes().items() if st[1] == proc.pid]
