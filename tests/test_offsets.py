"""Offset tracking: commits never pass the first record of an unreleased window."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streambind.stream.chunks import SensorChunk
from streambind.stream.offsets import OffsetTracker, PendingToken
from streambind.stream.windows import Windower, WindowKey, WindowSpec

MS = 1_000_000

A = WindowKey("d1", "audio", 0, 2)
B = WindowKey("d1", "audio", 1, 3)
C = WindowKey("d2", "audio", 0, 2)


def _chunk(ts_ms, *, device, seq):
    return SensorChunk("audio", device, ts_ms * MS, (ts_ms + 50) * MS, seq,
                       np.zeros(1, np.float32), None, None, 0, seq)


def run(steps):
    """Apply ("c", partition, offset, keys) / ("r", key) steps; return committable()."""
    t = OffsetTracker()
    for step in steps:
        if step[0] == "c":
            t.consumed(step[1], step[2], step[3])
        else:
            t.released(step[1])
    return t.committable()


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], {}),
        ([("c", 0, 0, [])], {0: 1}),  # nothing held: last consumed + 1
        ([("c", 0, 5, [A]), ("c", 0, 6, [A]), ("c", 0, 7, [])], {0: 5}),
        ([("c", 0, 5, [A]), ("c", 0, 6, [A, B]), ("r", A)], {0: 6}),  # B opened at 6
        ([("c", 0, 5, [A]), ("c", 0, 6, [A, B]), ("r", B)], {0: 5}),
        ([("c", 0, 5, [A]), ("c", 0, 6, [A, B]), ("r", A), ("r", B)], {0: 7}),
        ([("c", 0, 5, [A]), ("c", 0, 6, [C]), ("r", C), ("c", 0, 7, [A])], {0: 5}),
        ([("c", 0, 5, [A]), ("c", 1, 50, [C]), ("c", 1, 51, [])], {0: 5, 1: 50}),
        ([("c", 0, 5, [A]), ("c", 1, 50, [C]), ("r", C)], {0: 5, 1: 51}),
        ([("c", 0, 5, [A]), ("c", 1, 50, [A]), ("r", A)], {0: 6, 1: 51}),  # shared key
        ([("c", 0, 5, [A]), ("r", A), ("r", A)], {0: 6}),  # double release is harmless
        ([("c", 0, 9, [A]), ("c", 0, 7, [A])], {0: 7}),  # lower offset lowers the hold
    ],
)
def test_committable_table(steps, expected):
    assert run(steps) == expected


def test_pending_token_holds_a_dead_lettered_record():
    t = OffsetTracker()
    t.consumed(0, 10, [])
    token = t.hold(0, 11, "dlq")
    assert token == PendingToken(0, 11, "dlq")
    t.consumed(0, 12, [])
    assert t.committable() == {0: 11}
    assert t.released(token)
    assert t.committable() == {0: 13}
    assert not t.released(token)


def test_commit_never_goes_backwards():
    t = OffsetTracker()
    t.consumed(0, 10, [A])
    t.released(A)
    assert t.committable() == {0: 11}
    t.consumed(0, 3, [B])  # a seek back without forget_partition
    assert t.committable() == {0: 11}


def test_forget_partition_after_revoke():
    t = OffsetTracker()
    t.consumed(0, 5, [A])
    t.consumed(1, 5, [C])
    t.forget_partition(0)
    assert t.committable() == {1: 5}
    assert t.pending_count() == 1 and t.unreleased(1) == [C]
    t.consumed(0, 2, [A])  # reassigned, replays from its committed offset
    assert t.committable() == {0: 2, 1: 5}


def test_matches_a_brute_force_model_on_a_long_random_stream():
    rng = random.Random(4)
    t = OffsetTracker()
    members: dict[object, set[int]] = {}
    released: set[object] = set()
    next_key, open_keys, floor = 0, [], 0
    for offset in range(20_000):
        if rng.random() < 0.05 or not open_keys:
            open_keys.append(next_key)
            next_key += 1
        keys = rng.sample(open_keys, k=min(len(open_keys), rng.choice([0, 1, 2])))
        t.consumed(0, offset, keys)
        for k in keys:
            members.setdefault(k, set()).add(offset)
        while len(open_keys) > 8 or (open_keys and rng.random() < 0.04):
            k = open_keys.pop(rng.randrange(len(open_keys)))
            t.released(k)
            released.add(k)
        if offset % 97 == 0:
            held = [min(m) for k, m in members.items() if k not in released]
            expected = max(floor, min(held, default=offset + 1))
            assert t.committable() == {0: expected}
            floor = expected
    assert len(t._parts[0].heap) <= 2 * t.pending_count(0) + 50  # stale entries are pruned


@pytest.mark.parametrize("crash_at", [40, 77, 150, 233])
def test_crash_and_replay_loses_no_window(crash_at):
    """Windower + tracker: kill after any record, replay from the commit, nothing is lost."""
    s = WindowSpec("audio", size_ns=1000 * MS, hop_ns=500 * MS, allowed_lateness_ns=120 * MS)
    records = [
        _chunk(ts + (40 if i % 9 == 4 else 0), device=f"d{i % 3}", seq=i)
        for i, ts in enumerate(range(0, 12_000, 40))
    ]

    def consume(windower, tracker, recs, acked_after=2):
        """Emit closed windows; acknowledge each one `acked_after` records later."""
        out, inflight, commit = [], [], None
        for rec in recs:
            tracker.consumed(0, rec.offset, windower.add(rec).keys)
            closed = windower.poll()
            out += closed
            inflight += [(rec.offset + acked_after, w.key) for w in closed]
            for due, key in [x for x in inflight if x[0] <= rec.offset]:
                tracker.released(key)
                inflight.remove((due, key))
            unreleased = tracker.unreleased(0)
            commit = (tracker.committable()[0],
                      windower.restart_states(unreleased),
                      {w.key for w in out if w.key not in unreleased})
        return out, commit

    def clock():
        return 0.0

    original = Windower(s, clock=clock)
    full, _ = consume(original, OffsetTracker(), records)
    full += original.flush()
    _, (committed, states, acked) = consume(
        Windower(s, clock=clock), OffsetTracker(), records[:crash_at])
    assert acked  # some windows were acknowledged before the crash
    replay = Windower(s, clock=clock, restored=states)
    again, _ = consume(replay, OffsetTracker(), records[committed:])
    again += replay.flush()
    by_key = {w.key: w for w in again}
    assert set(by_key).isdisjoint(acked)  # acknowledged windows are not rebuilt
    for w in full:
        if w.key in acked:
            continue
        assert w.key in by_key, w.key
        assert [c.offset for c in by_key[w.key].chunks] == [c.offset for c in w.chunks]
