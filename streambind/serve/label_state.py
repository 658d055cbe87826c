"""Hysteresis state of the labelled-event sink, by stream and window end, for replays.

Whether a label is on for a window depends on whether it was on for the stream's previous
window (``streambind.labels.hysteresis``). A consumer that restarts replays windows from
its committed offset; for the replayed windows to carry the labels they had the first
time, the replay must start from the state the stream had right after the last window it
does not replay. ``LabelState`` keeps, per stream (device, modality), the state after each
published window as a short history of *changes* by window end (state is constant between
changes, so a stable stream costs one entry), and answers the restart-state interface:
``snapshot(device, modality, through_end_ns)`` and ``restore(device, modality, doc)``.

A snapshot document (JSON)::

    {"end_ns": 1764576002000000000,
     "label_sets": {"home": {"version": 4, "on": ["dog barking"]}}}

State is per label set *version*: a new version starts with every label off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SetState = tuple[int, frozenset[str]]
"""(label set version, names of the labels on)."""

HISTORY_CHANGES = 64
"""State changes kept per stream: enough to cover the windows between the last commit and
the newest published window at any sane commit interval."""
HISTORY_HORIZON_NS = 600 * 1_000_000_000
"""Changes older (event time) than this behind the stream's newest window are dropped,
except the newest of them, which is the base state of everything after it."""
IDLE_TTL_S = 3600.0
"""A stream with no window for this long (processing time) is forgotten."""
MAX_RESTORED_LABELS = 4096


@dataclass
class _Stream:
    current: dict[str, SetState]
    changes: deque[tuple[int, dict[str, SetState]]]
    touched_s: float
    last_end_ns: int


class LabelState:
    """Per-stream hysteresis state with a history of changes; thread-safe."""

    def __init__(
        self,
        *,
        history_changes: int = HISTORY_CHANGES,
        horizon_ns: int = HISTORY_HORIZON_NS,
        idle_ttl_s: float = IDLE_TTL_S,
    ):
        self._history_changes = history_changes
        self._horizon_ns = horizon_ns
        self._idle_ttl_s = idle_ttl_s
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep_s = 0.0

    def on_before(self, device_id: str, modality: str, label_set: str, version: int) -> frozenset:
        """The labels of ``label_set`` (at ``version``) that were on for the stream's last
        window; empty for a new stream or a new version."""
        with self._lock:
            stream = self._streams.get((device_id, modality))
            state = None if stream is None else stream.current.get(label_set)
        if state is None or state[0] != version:
            return frozenset()
        return state[1]

    def record(
        self, device_id: str, modality: str, end_ns: int, sets: Mapping[str, SetState]
    ) -> None:
        """The state right after the stream's window ending at ``end_ns``: the labels on per
        label set scored for it (sets not scored keep their state)."""
        now_s = time.monotonic()
        with self._lock:
            key = (device_id, modality)
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream({}, deque(), now_s, end_ns)
            self._streams.move_to_end(key)
            stream.touched_s = now_s
            stream.last_end_ns = max(stream.last_end_ns, end_ns)
            current = {**stream.current, **sets}
            if current != stream.current or not stream.changes:
                stream.current = current
                stream.changes.append((end_ns, current))
                self._prune(stream, end_ns)
            if now_s >= self._next_sweep_s:
                self._sweep(now_s)

    def snapshot(self, device_id: str, modality: str, through_end_ns: int) -> dict | None:
        """The state right after the stream's last window with end <= ``through_end_ns``
        (JSON-serializable), or None when no such window is known."""
        with self._lock:
            stream = self._streams.get((device_id, modality))
            if stream is None:
                return None
            found = None
            for end_ns, state in stream.changes:
                if end_ns > through_end_ns:
                    break
                found = state
            last_end_ns = stream.last_end_ns
        if found is None:
            return None
        # The state holds from its change until the next one: as of the mark (or of the
        # stream's newest window, if the mark is beyond it).
        return {
            "end_ns": min(through_end_ns, last_end_ns),
            "label_sets": {
                name: {"version": version, "on": sorted(on)}
                for name, (version, on) in sorted(found.items())
            },
        }

    def restore(self, device_id: str, modality: str, doc: Mapping[str, Any]) -> None:
        """Start the stream from a snapshot document (restart state, network data: checked,
        an unusable document is ignored with a warning and the stream starts empty)."""
        state = parse_snapshot(doc)
        with self._lock:
            key = (device_id, modality)
            if state is None:
                self._streams.pop(key, None)
                logger.warning("ignoring unusable label state for %s/%s", device_id, modality)
                return
            end_ns, sets = state
            self._streams[key] = _Stream(sets, deque([(end_ns, sets)]), time.monotonic(), end_ns)
            self._streams.move_to_end(key)

    def forget(self, device_id: str, modality: str) -> None:
        """Drop one stream's state."""
        with self._lock:
            self._streams.pop((device_id, modality), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def _prune(self, stream: _Stream, newest_end_ns: int) -> None:
        changes = stream.changes
        while len(changes) > self._history_changes:
            changes.popleft()
        # Keep the newest change older than the horizon: it is the base of what follows.
        while len(changes) > 1 and changes[1][0] < newest_end_ns - self._horizon_ns:
            changes.popleft()

    def _sweep(self, now_s: float) -> None:
        self._next_sweep_s = now_s + min(60.0, self._idle_ttl_s / 4)
        while self._streams:
            key, stream = next(iter(self._streams.items()))
            if now_s - stream.touched_s < self._idle_ttl_s:
                return
            del self._streams[key]


def parse_snapshot(doc: object) -> tuple[int, dict[str, SetState]] | None:
    """(end_ns, state per set) of a snapshot document, or None when it is malformed."""
    if not isinstance(doc, Mapping):
        return None
    end_ns = doc.get("end_ns")
    sets = doc.get("label_sets")
    if not isinstance(end_ns, int) or isinstance(end_ns, bool) or not isinstance(sets, Mapping):
        return None
    out: dict[str, SetState] = {}
    count = 0
    for name, entry in sets.items():
        if not isinstance(name, str) or not isinstance(entry, Mapping):
            return None
        version, on = entry.get("version"), entry.get("on")
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(on, list):
            return None
        if not all(isinstance(label, str) for label in on):
            return None
        count += len(on)
        if count > MAX_RESTORED_LABELS:
            return None
        out[name] = (version, frozenset(on))
    return end_ns, out
