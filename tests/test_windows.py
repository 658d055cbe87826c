"""Windowing: epoch-aligned ranges, watermark, lateness, idle timeout, coverage, replay."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from streambind.errors import ConfigError
from streambind.stream.chunks import SensorChunk
from streambind.stream.windows import (
    NS_PER_S,
    Windower,
    WindowKey,
    WindowSpec,
    coverage_and_gaps,
    window_ranges,
    windows_overlapping,
)

MS = 1_000_000
_offsets = itertools.count()


class FakeClock:
    """Processing time the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def chunk(ts_ms, dur_ms=100, *, device="d1", seq=None, offset=None, modality="audio"):
    """A chunk covering [ts_ms, ts_ms + dur_ms) milliseconds."""
    return SensorChunk(
        modality=modality,
        device_id=device,
        ts_ns=int(ts_ms * MS),
        end_ns=int((ts_ms + dur_ms) * MS),
        seq=int(ts_ms) if seq is None else seq,
        data=np.zeros(1, dtype=np.float32),
        sample_rate=None,
        sample_ts_ns=None,
        partition=0,
        offset=next(_offsets) if offset is None else offset,
    )


def spec(modality="audio", size_ms=1000, hop_ms=None, lateness_ms=0, **kw):
    """A small spec in milliseconds; tumbling unless hop_ms is given."""
    return WindowSpec(
        modality=modality,
        size_ns=size_ms * MS,
        hop_ns=(hop_ms or size_ms) * MS,
        allowed_lateness_ns=lateness_ms * MS,
        **kw,
    )


def starts_ms(windows):
    return [w.start_ns // MS for w in windows]


# -- window_ranges ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ts", "size", "hop", "expected"),
    [
        (0, 10, 5, [(-5, 5), (0, 10)]),
        (4, 10, 5, [(-5, 5), (0, 10)]),
        (5, 10, 5, [(0, 10), (5, 15)]),
        (9, 10, 5, [(0, 10), (5, 15)]),
        (10, 10, 5, [(5, 15), (10, 20)]),
        (-1, 10, 5, [(-10, 0), (-5, 5)]),
        (-5, 10, 5, [(-10, 0), (-5, 5)]),
        (-6, 10, 5, [(-15, -5), (-10, 0)]),
        (0, 10, 10, [(0, 10)]),
        (9, 10, 10, [(0, 10)]),
        (10, 10, 10, [(10, 20)]),
        (-1, 10, 10, [(-10, 0)]),
        (10, 10, 3, [(3, 13), (6, 16), (9, 19)]),
        (0, 10, 3, [(-9, 1), (-6, 4), (-3, 7), (0, 10)]),
        (7, 10, 1, [(s, s + 10) for s in range(-2, 8)]),
        (
            1_700_000_000_123_456_789, 2 * NS_PER_S, NS_PER_S,
            [(1_699_999_999 * NS_PER_S, 1_700_000_001 * NS_PER_S),
             (1_700_000_000 * NS_PER_S, 1_700_000_002 * NS_PER_S)],
        ),
    ],
)
def test_window_ranges(ts, size, hop, expected):
    ranges = window_ranges(ts, size, hop)
    assert ranges == expected
    assert all(s <= ts < e and s % hop == 0 for s, e in ranges)


@pytest.mark.parametrize(
    ("start", "end", "size", "hop", "expected"),
    [
        (8, 12, 10, 5, [(0, 10), (5, 15), (10, 20)]),
        (0, 10, 10, 10, [(0, 10)]),
        (0, 11, 10, 10, [(0, 10), (10, 20)]),
        (5, 5, 10, 5, [(0, 10), (5, 15)]),  # empty span = the instant
        (-3, 25, 10, 10, [(-10, 0), (0, 10), (10, 20), (20, 30)]),
    ],
)
def test_windows_overlapping(start, end, size, hop, expected):
    assert windows_overlapping(start, end, size, hop) == expected


@pytest.mark.parametrize(("size", "hop"), [(10, 0), (10, 11), (0, 0), (10, -5), (-10, 5)])
def test_window_ranges_rejects_bad_size_hop(size, hop):
    with pytest.raises(ConfigError):
        window_ranges(0, size, hop)


# -- WindowSpec ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("modality", "size_s", "min_frames"),
    [("audio", 2, 0), ("vision", 2, 2), ("depth", 2, 1), ("thermal", 2, 1), ("imu", 5, 0)],
)
def test_default_specs_follow_design_table(modality, size_s, min_frames):
    s = WindowSpec.default(modality)
    assert (s.size_ns, s.hop_ns, s.min_frames) == (size_s * NS_PER_S, size_s * NS_PER_S // 2,
                                                   min_frames)
    assert WindowSpec.default(modality, hop_ns=s.size_ns).hop_ns == s.size_ns


@pytest.mark.parametrize(
    "kwargs",
    [
        {"modality": "smell"},
        {"hop_ns": 3 * NS_PER_S},
        {"min_coverage": 1.5},
        {"idle_timeout_s": 0},
        {"allowed_lateness_ns": -1},
        {"min_frames": -1},
    ],
)
def test_bad_spec_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        replace(WindowSpec.default("audio"), **kwargs)


# -- watermark ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lateness_ms", "probe_ms", "closed"),
    [
        (0, 999, []),
        (0, 1000, [0]),
        (0, 2000, [0]),  # no data for [1000, 2000): no window
        (200, 1100, []),
        (200, 1199, []),
        (200, 1200, [0]),
        (200, 2200, [0]),
    ],
)
def test_watermark_closes_windows(lateness_ms, probe_ms, closed):
    w = Windower(spec(lateness_ms=lateness_ms), clock=FakeClock())
    for ts in range(0, 1000, 100):
        w.add(chunk(ts))
    assert w.poll() == []
    w.add(chunk(probe_ms, 1))
    assert starts_ms(w.poll()) == closed
    assert w.watermark_ns("d1") == (probe_ms - lateness_ms) * MS


def test_closing_does_not_depend_on_poll_frequency():
    stream = [chunk(ts, device=f"d{ts % 3}") for ts in range(0, 5000, 50)]
    stream[10], stream[12] = stream[12], stream[10]  # some disorder
    eager = Windower(spec(hop_ms=500, lateness_ms=120), clock=FakeClock())
    lazy = Windower(spec(hop_ms=500, lateness_ms=120), clock=FakeClock())
    got_eager = []
    for c in stream:
        eager.add(c)
        got_eager += eager.poll()
        lazy.add(c)
    got_lazy = lazy.poll()
    # Devices close on their own event time, so the order across polls may differ.
    assert sorted((w.key, [c.offset for c in w.chunks]) for w in got_eager) == sorted(
        (w.key, [c.offset for c in w.chunks]) for w in got_lazy
    )


# -- lateness and order --------------------------------------------------------------

@pytest.mark.parametrize(
    ("hop_ms", "lateness_ms", "probe_ms", "late", "joined", "late_starts"),
    [
        (1000, 0, 950, True, [], [0]),  # its only window closed
        (1000, 100, 950, True, [], [0]),  # closed at wm 1000 despite the lateness
        (500, 100, 1020, False, [500, 1000], []),  # wm 1000: window 500 still open
        (500, 0, 950, False, [500], [0]),  # one of two windows closed
        (1000, 0, 1000, False, [1000], []),  # on the boundary: next window
    ],
)
def test_late_records_are_counted_not_merged(hop_ms, lateness_ms, probe_ms, late, joined,
                                             late_starts):
    w = Windower(spec(hop_ms=hop_ms, lateness_ms=lateness_ms), clock=FakeClock())
    for ts in range(0, 1000, 100):
        w.add(chunk(ts))
    w.add(chunk(1000 + lateness_ms, 1))
    first = w.poll()
    result = w.add(chunk(probe_ms, 10, seq=10_000))
    assert result.late is late
    assert [k.start_ns // MS for k in result.keys] == joined
    assert [k.start_ns // MS for k in result.late_keys] == late_starts
    assert w.late_records == int(late)
    for win in first + w.flush():
        assert (10_000 in {c.seq for c in win.chunks}) is (win.key in result.keys)


def test_out_of_order_within_lateness_is_sorted():
    w = Windower(spec(lateness_ms=300), clock=FakeClock())
    for ts in [0, 200, 100, 400, 300, 600, 500, 800, 900, 700, 1300]:
        assert not w.add(chunk(ts)).late
    (win,) = w.poll()
    assert [c.ts_ns // MS for c in win.chunks] == list(range(0, 1000, 100))
    assert win.coverage == 1.0 and win.outcome == "ok" and not win.gap_filled


def test_duplicate_seq_is_ignored():
    w = Windower(spec(), clock=FakeClock())
    assert w.add(chunk(0, seq=1)).keys
    dup = w.add(chunk(0, seq=1))
    assert dup.duplicate and not dup.keys and not dup.late
    assert w.duplicate_records == 1
    (win,) = w.flush()
    assert len(win.chunks) == 1


def test_long_chunk_joins_every_window_it_overlaps():
    w = Windower(spec(hop_ms=500), clock=FakeClock())
    result = w.add(chunk(0, 2500))
    assert [k.start_ns // MS for k in result.keys] == [-500, 0, 500, 1000, 1500, 2000]
    assert {k.device_id for k in result.keys} == {"d1"}


def test_open_windows_report_first_offsets():
    w = Windower(spec(hop_ms=500, lateness_ms=1000), clock=FakeClock())
    w.add(chunk(600, offset=7))
    w.add(chunk(100, offset=9))  # out of order, lower ts, higher offset
    w.add(chunk(300, device="d2", offset=8))
    open_ = w.open_windows()
    assert open_[WindowKey("d1", "audio", 0, 1000 * MS)] == 7
    assert open_[WindowKey("d1", "audio", -500 * MS, 500 * MS)] == 9
    assert open_[WindowKey("d2", "audio", 0, 1000 * MS)] == 8
    assert w.first_open_offset() == 7


def test_wrong_modality_is_rejected():
    with pytest.raises(ConfigError):
        Windower(spec(), clock=FakeClock()).add(chunk(0, modality="imu"))


# -- idle timeout --------------------------------------------------------------------

def test_idle_device_gets_its_last_windows():
    clock = FakeClock()
    w = Windower(spec(hop_ms=500, lateness_ms=5000, idle_timeout_s=5.0), clock=clock)
    for ts in range(0, 1000, 100):
        w.add(chunk(ts))
    clock.now_s = 3.0
    w.add(chunk(0, device="busy", seq=1))
    clock.now_s = 5.0
    assert w.poll() == []  # exactly the timeout is not "longer than"
    clock.now_s = 5.5
    closed = w.poll()
    assert [(c.device_id, c.start_ns // MS, c.closed_by) for c in closed] == [
        ("d1", -500, "idle"), ("d1", 0, "idle"), ("d1", 500, "idle")
    ]
    # the device resumes: its closed windows are late, the next one opens
    result = w.add(chunk(900, seq=9001))
    assert result.late and w.late_records == 1
    assert [k.start_ns // MS for k in result.late_keys] == [0, 500]
    resumed = w.add(chunk(1000, seq=1000))
    assert [k.start_ns // MS for k in resumed.late_keys] == [500]
    assert [k.start_ns // MS for k in resumed.keys] == [1000]
    assert set(w.open_windows()) >= {WindowKey("busy", "audio", 0, 1000 * MS)}


@pytest.mark.parametrize("seen, now_s, expected_s", [
    ([], 0.0, None),                                  # no device: nothing to wait for
    ([("d1", 1.0)], 1.0, 5.0),                        # just seen: the whole timeout
    ([("d1", 1.0), ("d2", 3.0)], 4.0, 2.0),           # the least recently seen goes first
    ([("d1", 1.0), ("d2", 3.0), ("d1", 3.5)], 4.5, 3.5),  # d1 seen again: d2 goes first
    ([("d1", 1.0)], 7.0, -1.0),                       # overdue: the next poll() closes it
])
def test_idle_in_s_is_the_time_until_the_next_device_times_out(seen, now_s, expected_s):
    clock = FakeClock()
    w = Windower(spec(idle_timeout_s=5.0), clock=clock)
    for device, at_s in seen:
        clock.now_s = at_s
        w.add(chunk(int(at_s * 1000), device=device))
    clock.now_s = now_s
    assert w.idle_in_s() == (None if expected_s is None else pytest.approx(expected_s))
    if expected_s is not None and expected_s < 0:
        assert w.poll() and w.idle_in_s() is None  # closed by idle: no device left active


def test_flush_closes_everything():
    w = Windower(spec(), clock=FakeClock())
    w.add(chunk(0))
    w.add(chunk(1500, device="d2"))
    closed = w.flush()
    assert [(c.device_id, c.closed_by) for c in closed] == [("d1", "flush"), ("d2", "flush")]
    assert w.open_windows() == {}
    assert w.poll() == []


# -- coverage -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spans_ms", "coverage", "outcome", "gap_filled", "gaps_ms"),
    [
        ([(0, 1000)], 1.0, "ok", False, []),
        ([(0, 400), (500, 900)], 0.8, "ok", True, [(400, 500), (900, 1000)]),
        ([(100, 850)], 0.75, "ok", True, [(0, 100), (850, 1000)]),
        ([(0, 700)], 0.7, "low_coverage", False, [(700, 1000)]),
        ([(0, 100), (350, 1000)], 0.75, "low_coverage", False, [(100, 350)]),  # gap > max
        ([(0, 499.5), (500, 1000)], 0.9995, "ok", False, []),  # under the tolerance
        ([(0, 600), (300, 900), (850, 1000)], 1.0, "ok", False, []),  # overlaps
        ([(-200, 300), (800, 1300)], 0.5, "low_coverage", False, [(300, 800)]),
    ],
)
def test_coverage_threshold_and_gap_flags(spans_ms, coverage, outcome, gap_filled, gaps_ms):
    s = spec(min_coverage=0.75, max_gap_fill_ns=200 * MS, gap_tolerance_ns=1 * MS)
    w = Windower(s, clock=FakeClock())
    for i, (a, b) in enumerate(spans_ms):
        w.add(chunk(a, b - a, seq=i))
    win = next(x for x in w.flush() if x.start_ns == 0)
    assert win.coverage == pytest.approx(coverage)
    assert (win.outcome, win.gap_filled) == (outcome, gap_filled)
    assert [(a // MS, b // MS) for a, b in win.gaps_ns] == gaps_ms


def test_coverage_and_gaps_helper():
    assert coverage_and_gaps([], 0, 10) == (0.0, ((0, 10),))
    assert coverage_and_gaps([(2, 4), (3, 5)], 0, 10, gap_tolerance_ns=2) == (
        0.3, ((5, 10),))


@pytest.mark.parametrize(
    ("modality", "frame_ts_ms", "outcome"),
    [
        ("vision", [0, 500], "ok"),
        ("vision", [0], "low_coverage"),  # needs two frames even when spanning
        ("vision", [0, 100], "low_coverage"),  # coverage 0.6 but gap 400 ms > 300
        ("depth", [250], "ok"),
        ("depth", [500], "low_coverage"),  # coverage 0.5 but gap 500 ms > 300
        ("thermal", [], None),
    ],
)
def test_frame_windows(modality, frame_ts_ms, outcome):
    s = spec(modality, min_coverage=0.5, max_gap_fill_ns=300 * MS, gap_tolerance_ns=50 * MS,
             min_frames=2 if modality == "vision" else 1)
    w = Windower(s, clock=FakeClock())
    for ts in frame_ts_ms:
        w.add(chunk(ts, 500, modality=modality))
    closed = w.flush()
    assert [c.outcome for c in closed] == ([outcome] if outcome else [])


def test_frame_joins_by_timestamp_not_span():
    w = Windower(spec("vision"), clock=FakeClock())
    result = w.add(chunk(950, 200, modality="vision"))
    assert [k.start_ns // MS for k in result.keys] == [0]


# -- replay -------------------------------------------------------------------------

def test_replay_from_commit_rebuilds_unreleased_windows_exactly():
    """Crash after a commit: replay from the committed offset with the stored watermark."""
    s = spec(hop_ms=500, lateness_ms=150)
    records = []
    for i, ts in enumerate(range(0, 6000, 50)):
        ts_jittered = ts + (70 if i % 7 == 3 else 0) - (60 if i % 11 == 5 else 0)
        records.append(chunk(ts_jittered, 50, device=f"d{i % 2}", seq=i, offset=i))
    records.append(chunk(300, 50, device="d0", seq=999, offset=len(records)))  # late
    original = Windower(s, clock=FakeClock())
    emitted, commit_at = [], 70
    for rec in records[:commit_at]:
        original.add(rec)
        emitted += original.poll()
    unreleased = list(original.open_windows())
    committed = original.first_open_offset()
    states = original.restart_states(unreleased)
    rest = []
    for rec in records[commit_at:]:
        original.add(rec)
        rest += original.poll()
    rest += original.flush()

    replay = Windower(s, clock=FakeClock(), restored=states)
    rebuilt = []
    for rec in records[committed:]:
        replay.add(rec)
        rebuilt += replay.poll()
    rebuilt += replay.flush()

    def view(ws):
        return {(w.key, tuple(c.offset for c in w.chunks), w.coverage, w.outcome) for w in ws}

    assert view(rest) == view(rebuilt)
    assert {w.key for w in emitted}.isdisjoint({w.key for w in rebuilt})


def test_restart_states_cap_the_watermark_below_unreleased_windows_and_ignore_tokens():
    from streambind.stream.offsets import PendingToken

    w = Windower(spec(hop_ms=500), clock=FakeClock())
    for ts in range(0, 3000, 100):
        w.add(chunk(ts))
    w.poll()  # the watermark (2900) closed everything ending at or before it
    keys = [WindowKey("d1", "audio", 1000 * MS, 2000 * MS), PendingToken(0, 3),
            WindowKey("d1", "audio", 2500 * MS, 3500 * MS)]
    state = w.restart_states(keys)["d1"]
    assert state.watermark_ns == 2000 * MS - 1
    assert state.through_ns == 2900 * MS
    assert state.reopen_starts == (1000 * MS,)  # closed but not released: rebuilt
    assert state.sink_through_ns == 2000 * MS - 1
    assert w.restart_states([])["d1"].watermark_ns == 2900 * MS
    assert Windower(spec(), clock=FakeClock()).restart_states(keys) == {}


@pytest.mark.parametrize(
    ("modality", "frame_ts_ms", "coverage", "outcome"),
    [
        ("vision", [0, 1000], 0.625, "ok"),  # 1 fps: each frame held until the next
        ("vision", [0, 500, 1000, 1500], 0.875, "ok"),  # 2 fps
        ("vision", list(range(0, 2000, 100)), 1.0, "ok"),  # 10 fps, spans overlap
        ("vision", [0, 1500], 0.25, "low_coverage"),  # a frame missing: not held 1.5 s
        ("depth", [700], 0.125, "low_coverage"),
        ("depth", [0, 1000], 0.625, "ok"),
        ("thermal", [600, 1300], 0.475, "ok"),
    ],
)
def test_frame_coverage_is_sample_and_hold(modality, frame_ts_ms, coverage, outcome):
    w = Windower(WindowSpec.default(modality), clock=FakeClock())
    for i, ts in enumerate(frame_ts_ms):
        w.add(chunk(ts, 250, modality=modality, seq=i))
    win = next(x for x in w.flush() if x.start_ns == 0)
    assert win.coverage == pytest.approx(coverage)
    assert win.outcome == outcome
