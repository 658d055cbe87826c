"""Event time per device: table tests (backlog, clock skew both ways, idle close, device TTL),
bounded frame candidates and bytes, cheap polls with many devices, per-device replay.

Every scenario puts several devices on ONE windower (one partition). Under the old
per-partition watermark, a device ahead made the others late and a backlog was lost; here
each device only meets its own closed windows.
"""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from streambind.errors import ConfigError
from streambind.stream.chunks import SensorChunk
from streambind.stream.offsets import OffsetTracker
from streambind.stream.window_buffer import FRAME_CANDIDATES, coverage_and_gaps
from streambind.stream.windows import (
    DeviceRestart,
    Windower,
    WindowKey,
    WindowSpec,
    tracked_devices,
)

MS = 1_000_000
S = 1000  # ms
_offsets = itertools.count()


class FakeClock:
    """Processing time the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def chunk(device, ts_ms, dur_ms=100, *, seq=None, offset=None, modality="audio", nbytes=4):
    """A chunk of ``device`` covering [ts_ms, ts_ms + dur_ms) ms with ``nbytes`` of payload."""
    return SensorChunk(
        modality=modality, device_id=device, ts_ns=int(ts_ms * MS),
        end_ns=int((ts_ms + dur_ms) * MS), seq=int(ts_ms) if seq is None else seq,
        data=np.zeros(nbytes // 4, dtype=np.float32), sample_rate=None, sample_ts_ns=None,
        partition=0, offset=next(_offsets) if offset is None else offset)


def spec(modality="audio", size_ms=1000, hop_ms=None, lateness_ms=0, **kw):
    """A small spec in milliseconds; tumbling unless hop_ms is given."""
    return WindowSpec(modality=modality, size_ns=size_ms * MS, hop_ns=(hop_ms or size_ms) * MS,
                      allowed_lateness_ns=lateness_ms * MS, **kw)


def stream(device, start_ms, end_ms, step_ms=100, skew_ms=0):
    """(device, event ts) of a device sending every ``step_ms`` on a clock off by skew."""
    return [(device, t + skew_ms) for t in range(start_ms, end_ms, step_ms)]


def merged(*streams):
    """Interleave streams in arrival order: the i-th record of every stream together."""
    out = []
    for group in itertools.zip_longest(*streams):
        out += [x for x in group if x is not None]
    return out


def run(events, s=None, clock=None):
    w = Windower(s or spec(), clock=clock or FakeClock())
    closed, late = [], 0
    for device, ts in events:
        late += w.add(chunk(device, ts)).late
        closed += w.poll()
    return w, closed, late


def windows(closed, device):
    return [(c.start_ns // MS, c.outcome) for c in closed if c.device_id == device]


# -- per-device watermarks: a table in the style of get_window_ranges tests ----------

SKEW_CASES = [
    # name, events in arrival order, {device: closed window starts (ms)}, late records
    ("own watermark closes own windows", stream("a", 0, 1100), {"a": [0]}, 0),
    ("a device ahead closes nobody else's windows",
     merged(stream("a", 0, 1000), stream("ahead", 0, 1100, skew_ms=50 * S)),
     {"a": [], "ahead": [50_000]}, 0),
    ("records of a device 30 s behind are not late",
     merged(stream("a", 0, 2100), stream("behind", 0, 2100, skew_ms=-30 * S)),
     {"a": [0, 1000], "behind": [-30_000, -29_000]}, 0),
    ("skew both ways on one partition",
     merged(stream("a", 0, 3100), stream("behind", 0, 3100, skew_ms=-30 * S),
            stream("ahead", 0, 3100, skew_ms=50 * S)),
     {"a": [0, 1000, 2000], "behind": [-30_000, -29_000, -28_000],
      "ahead": [50_000, 51_000, 52_000]}, 0),
    ("late only against its own closed window",
     stream("a", 0, 1000) + [("a", 1000), ("a", 550), ("b", 550)], {"a": [0], "b": []}, 1),
    ("backlog after an outage: the others moved on, nothing of it is late",
     stream("a", 0, 1000) + stream("b", 0, 1000) + stream("a", 1000, 10_100)
     + stream("b", 1000, 10_100),
     {"a": list(range(0, 10_000, 1000)), "b": list(range(0, 10_000, 1000))}, 0),
    ("a backlog far in the past opens its windows fresh",
     stream("a", 100_000, 101_100) + stream("old", 0, 2100),
     {"a": [100_000], "old": [0, 1000]}, 0),
]


@pytest.mark.parametrize(("name", "events", "expected", "late"), SKEW_CASES,
                         ids=[c[0] for c in SKEW_CASES])
def test_each_device_closes_on_its_own_event_time(name, events, expected, late):
    w, closed, n_late = run(events)
    for device, starts in expected.items():
        assert [s for s, _ in windows(closed, device)] == starts, device
        assert all(outcome == "ok" for _, outcome in windows(closed, device)), device
    assert n_late == late == w.late_records


def test_backlog_and_skew_lose_nothing_with_overlapping_windows():
    """hop < size, lateness 200 ms: every full window of every device comes out complete."""
    s = spec(size_ms=2000, hop_ms=1000, lateness_ms=200)
    events = merged(stream("a", 0, 12_000), stream("behind", 0, 12_000, skew_ms=-30 * S),
                    stream("ahead", 0, 12_000, skew_ms=50 * S)) + stream("late-upload", 0, 12_000)
    w, closed, late = run(events, s)
    closed += w.flush()
    assert late == 0
    for device, skew in (("a", 0), ("behind", -30_000), ("ahead", 50_000), ("late-upload", 0)):
        full = [(st, "ok") for st in range(skew, skew + 11_000, 1000)]
        got = windows(closed, device)
        assert [x for x in got if x[0] >= skew and x[0] + 2000 <= skew + 12_000] == full, device
        for c in closed:
            if c.device_id == device and c.start_ns // MS in range(skew, skew + 11_000, 1000):
                assert len(c.chunks) == 20 and c.coverage == 1.0


# -- idle close ---------------------------------------------------------------------

def test_idle_close_is_per_device():
    """A quiet device gets its last windows after the idle timeout; a busy one on the same
    partition keeps its windows open (it is not idle) and its records are never late."""
    # "quiet" is silent from 0 s: closed at step 6 (6 s > 5 s), by idle, alone
    w2 = Windower(spec(lateness_ms=5000, idle_timeout_s=5.0), clock=(c2 := FakeClock()))
    for ts in range(0, 1000, 100):
        w2.add(chunk("quiet", ts))
    got = []
    for step in range(1, 9):
        c2.now_s = step
        w2.add(chunk("busy", step * 100))
        got += [(step, c.device_id, c.start_ns // MS, c.closed_by) for c in w2.poll()]
    assert got == [(6, "quiet", 0, "idle")]  # busy's window stays open: it is not idle
    assert WindowKey("busy", "audio", 0, 1000 * MS) in w2.open_windows()
    late = w2.add(chunk("quiet", 900, seq=10_000))  # its own closed window: late
    assert late.late and w2.late_records == 1
    assert not w2.add(chunk("busy", 900)).late  # busy's window is still open


# -- device TTL ----------------------------------------------------------------------

def test_idle_devices_are_forgotten_after_the_ttl_restart_state_included():
    clock = FakeClock()
    w = Windower(spec(idle_timeout_s=5.0, device_ttl_s=60.0), clock=clock)
    for ts in range(0, 1000, 100):
        w.add(chunk("gone", ts))
        w.add(chunk("stays", ts))
    assert sorted(w.devices) == ["gone", "stays"]
    before = tracked_devices("audio")
    for now in range(1, 200, 1):
        clock.now_s = float(now)
        if now % 4 == 0:
            w.add(chunk("stays", 1000 + now * 100))
        w.poll()
        if now == 60:  # closed at 6 s by idle; 60 s after that it is still within the TTL
            assert "gone" in w.devices
    assert w.devices == ["stays"] and w.forgotten_devices == 1
    assert tracked_devices("audio") == before - 1
    gauge = REGISTRY.get_sample_value("streambind_tracked_devices")
    assert gauge == tracked_devices() >= 1
    assert set(w.restart_states([])) == {"stays"}
    # A forgotten device that comes back starts afresh (its old windows were emitted).
    assert w.add(chunk("gone", 5000)).keys


def test_a_device_is_not_forgotten_while_a_replay_could_meet_its_records():
    clock = FakeClock()
    safe = {"offset": 0}
    w = Windower(spec(idle_timeout_s=1.0, device_ttl_s=10.0), clock=clock,
                 safe_offset=lambda: safe["offset"])
    w.add(chunk("d", 0, offset=41))
    for now in range(1, 40):
        clock.now_s = float(now)
        w.poll()
    assert w.devices == ["d"]  # its record (offset 41) is above the commit point
    safe["offset"] = 42
    clock.now_s = 41.0
    w.poll()
    assert w.devices == []


@pytest.mark.parametrize("bad", [{"device_ttl_s": 0}, {"max_window_bytes": 0}])
def test_bad_bounds_are_config_errors(bad):
    with pytest.raises(ConfigError):
        spec(**bad)


# -- frames: bounded candidates, bytes -------------------------------------------------

@pytest.mark.parametrize(
    ("modality", "expected_ts_ms"),
    [
        ("vision", [0, 33, 66, 1914, 1947, 1980]),  # the 3 earliest and the 3 latest
        ("depth", [957, 990, 1023]),  # the 3 nearest the middle (1000)
        ("thermal", [957, 990, 1023]),
    ],
)
def test_frame_windows_keep_only_candidates_but_cover_every_frame(modality, expected_ts_ms):
    s = WindowSpec.default(modality, hop_ns=2000 * MS)
    w = Windower(s, clock=FakeClock())
    frame_ts = list(range(0, 2000, 33))  # 30 fps: 61 frames
    random.Random(3).shuffle(frame_ts)  # out of order within the window
    for i, ts in enumerate(frame_ts):
        w.add(chunk("cam", ts, 33, modality=modality, seq=i, nbytes=1000))
    assert w.held_bytes == 1000 * len(expected_ts_ms)
    (win,) = w.flush()
    assert [c.ts_ns // MS for c in win.chunks] == expected_ts_ms
    assert win.frames == len(frame_ts)
    all_spans = sorted((t * MS, (t + 33) * MS) for t in frame_ts)
    held = [(a, max(b, all_spans[i + 1][0]) if i + 1 < len(all_spans) else b)
            for i, (a, b) in enumerate(all_spans)]
    assert win.coverage == pytest.approx(coverage_and_gaps(held, 0, 2000 * MS)[0])
    assert win.outcome == "ok" and w.held_bytes == 0
    assert len(win.chunks) <= 2 * FRAME_CANDIDATES


def test_window_byte_bound_audio_counts_dropped_chunks_and_coverage_says_so():
    w = Windower(spec(max_window_bytes=4000), clock=FakeClock())
    for ts in range(0, 1000, 100):
        w.add(chunk("mic", ts, nbytes=800))
    assert w.held_bytes == 4000 and w.over_budget_chunks == 5
    (win,) = w.flush()
    assert len(win.chunks) == 5 and win.over_budget == 5
    assert win.coverage == pytest.approx(0.5) and win.outcome == "low_coverage"


def test_window_byte_bound_frames_drops_fallbacks_first():
    s = WindowSpec.default("vision", hop_ns=2000 * MS, max_window_bytes=2500)
    w = Windower(s, clock=FakeClock())
    for i, ts in enumerate(range(0, 2000, 100)):
        w.add(chunk("cam", ts, 100, modality="vision", seq=i, nbytes=1000))
    (win,) = w.flush()
    assert [c.ts_ns // MS for c in win.chunks] == [0, 1900]  # first and last survive
    assert win.over_budget > 0 and win.coverage == 1.0 and win.outcome == "ok"
    single = Windower(WindowSpec.default("depth", hop_ns=2000 * MS, max_window_bytes=10),
                      clock=FakeClock())
    for i, ts in enumerate((100, 1000, 1900)):
        single.add(chunk("cam", ts, 100, modality="depth", seq=i, nbytes=1000))
    (d,) = single.flush()
    assert [c.ts_ns // MS for c in d.chunks] == [1000]  # the selected frame is always kept


# -- cost with many devices ----------------------------------------------------------

def test_poll_stays_cheap_with_a_thousand_devices():
    clock = FakeClock()
    w = Windower(spec(size_ms=2000, hop_ms=1000, lateness_ms=500), clock=clock)
    devices = [f"dev-{i:04d}" for i in range(1000)]
    for ts in range(0, 1500, 100):
        for d in devices:
            w.add(chunk(d, ts))
    assert len(w.devices) == 1000 and len(w.open_windows()) == 3000
    w.poll()
    started = time.perf_counter()
    for _ in range(2000):
        assert w.poll() == []  # nothing due, nobody idle
    per_poll_s = (time.perf_counter() - started) / 2000
    assert per_poll_s < 200e-6, per_poll_s  # O(1): no scan over the 1000 devices
    w.add(chunk("dev-0007", 3000))  # one device moves on: only its windows close
    closed = w.poll()
    assert {c.device_id for c in closed} == {"dev-0007"}
    assert [c.start_ns // MS for c in closed] == [-1000, 0]  # wm 2500


# -- replay per device ---------------------------------------------------------------

def _consume(windower, tracker, recs, rng, *, stop=None):
    """Emit closed windows; release each one a random number of records later (out of
    order). Returns (windows, last commit: (offset, restart states, released keys))."""
    out, inflight, commit = [], [], None
    for n, rec in enumerate(recs):
        tracker.consumed(0, rec.offset, windower.add(rec).keys)
        closed = windower.poll()
        out += closed
        inflight += [(n + rng.randrange(0, 30), w.key) for w in closed]
        for due, key in [x for x in inflight if x[0] <= n]:
            tracker.released(key)
            inflight.remove((due, key))
        unreleased = tracker.unreleased(0)
        commit = (tracker.committable()[0], windower.restart_states(unreleased),
                  {w.key for w in out if w.key not in unreleased})
        if stop is not None and n + 1 >= stop:
            break
    return out, commit


@pytest.mark.parametrize("crash_at", [57, 140, 333, 501, 777])
def test_replay_with_skewed_devices_rebuilds_exactly_the_open_windows(crash_at):
    s = spec(size_ms=1000, hop_ms=500, lateness_ms=150)
    raw = merged(stream("a", 0, 12_000, 40), stream("behind", 0, 12_000, 40, skew_ms=-30 * S),
                 stream("ahead", 0, 12_000, 40, skew_ms=50 * S))
    raw[100:100] = stream("backlog", 0, 3000, 40)
    records = [chunk(d, ts + (60 if i % 13 == 5 else 0), 40, seq=i, offset=i)
               for i, (d, ts) in enumerate(raw)]
    full, _ = _consume(Windower(s, clock=FakeClock()), OffsetTracker(), records,
                       random.Random(1))
    first = Windower(s, clock=FakeClock())
    _, (committed, states, acked) = _consume(first, OffsetTracker(), records,
                                             random.Random(1), stop=crash_at)
    assert acked and states
    replay = Windower(s, clock=FakeClock(), restored=states)
    again, _ = _consume(replay, OffsetTracker(), records[committed:], random.Random(2))
    again += replay.flush()
    original = {w.key: w for w in full}
    rebuilt = {w.key: w for w in again}
    assert set(rebuilt).isdisjoint(acked)  # nothing emitted before is rebuilt (no partials)
    for key, w in original.items():
        if key in acked:
            continue
        assert key in rebuilt, key
        assert [c.offset for c in rebuilt[key].chunks] == [c.offset for c in w.chunks]
    assert replay.late_records == 0  # records of emitted windows count as replayed
    assert first.late_records == 0


def test_restart_state_keeps_reopen_windows_until_rebuilt():
    """A restored device's unreleased windows stay in its restart state until the replay
    reaches them, so an early second commit does not lose them."""
    s = spec(hop_ms=500)
    states = {"d": DeviceRestart(watermark_ns=999 * MS, through_ns=2000 * MS,
                                 reopen_starts=(1000 * MS,))}
    w = Windower(s, clock=FakeClock(), restored=states)
    again = w.restart_states([])["d"]
    assert again.reopen_starts == (1000 * MS,) and again.watermark_ns == 999 * MS
    joined = w.add(chunk("d", 1200))  # [1000, 2000) is rebuilt, [500, 1500) was emitted
    assert joined.keys == (WindowKey("d", "audio", 1000 * MS, 2000 * MS),)
    assert [k.start_ns // MS for k in joined.late_keys] == [500]
    assert w.add(chunk("d", 400, 50)).replayed and w.late_records == 0
    assert w.replayed_records == 1
