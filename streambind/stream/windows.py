"""Event-time windows: epoch-aligned ranges, per-partition watermark, idle timeout, coverage.

One :class:`Windower` serves one (topic, partition) and tracks every device on it. Windows
are ``[k * hop, k * hop + size)`` for integer ``k`` (epoch-aligned, so a replay rebuilds the
same boundaries). Membership:

* audio and imu chunks join every window their span ``[ts_ns, end_ns)`` overlaps, so a long
  audio chunk, or any chunk when ``hop < size``, joins several windows;
* frames (vision, depth, thermal) join the windows that contain their ``ts_ns``; their span
  ``[ts_ns, end_ns)`` (``end_ns`` = ``ts_ns`` + the frame interval) only counts for coverage.

Closing and lateness are decided by record order alone (never by how often :meth:`poll` is
called): the partition watermark is the largest ``ts_ns`` seen minus the allowed lateness; a
window whose end is at or below the watermark is closed, and so is every window of a device
up to the end of the last window closed for it by the idle timeout. A chunk's window that
is already closed is *late* for it: the chunk does not join it and the window key is
reported in :attr:`AddResult.late_keys`; a chunk that joins nothing because of that is a late
record (:attr:`AddResult.late`, counted in :attr:`Windower.late_records`). The idle timeout
is processing time (injected clock) and is the one non-deterministic input.

Coverage of a closed window is the fraction of ``[start_ns, end_ns)`` covered by the union of
its chunks' spans (clipped to the window). A frame is sample-and-hold: its span reaches on to
the next frame of the window when that comes within ``max_gap_fill_ns``, so frame coverage
does not depend on the frame rate, only on missing frames. Uncovered stretches longer than
the spec's ``gap_tolerance_ns`` are gaps. The outcome is ``ok`` when coverage >=
``min_coverage``, the longest gap is <= ``max_gap_fill_ns`` and (frames) the window holds at
least ``min_frames`` frames; otherwise ``low_coverage`` (the caller drops and counts it). An
``ok`` window with gaps is flagged ``gap_filled``: :mod:`streambind.stream.assemble` fills
them (audio: zeros, imu: linear interpolation; frames: the selected frames skip them).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from streambind.errors import ConfigError
from streambind.stream.chunks import FRAME_MODALITIES, MODALITIES, SensorChunk

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
Outcome = Literal["ok", "low_coverage"]
ClosedBy = Literal["watermark", "idle", "flush"]


def window_ranges(ts_ns: int, size_ns: int, hop_ns: int) -> list[tuple[int, int]]:
    """Epoch-aligned windows ``(start, end)`` containing ``ts_ns``, in start order.

    Starts are ``k * hop_ns`` for any integer ``k`` (negative timestamps work too), and a
    window contains ``ts`` when ``start <= ts < start + size``. Requires
    ``0 < hop_ns <= size_ns``; raises :class:`ConfigError` otherwise.
    """
    return windows_overlapping(ts_ns, ts_ns + 1, size_ns, hop_ns)


def windows_overlapping(
    start_ns: int, end_ns: int, size_ns: int, hop_ns: int
) -> list[tuple[int, int]]:
    """Epoch-aligned windows that overlap the span ``[start_ns, end_ns)``, in start order.

    An empty span (``end_ns <= start_ns``) is treated as the instant ``start_ns``.
    """
    _check_size_hop(size_ns, hop_ns)
    end_ns = max(end_ns, start_ns + 1)
    first_k = (start_ns - size_ns) // hop_ns + 1  # smallest k with k*hop + size > start
    last_k = -((-end_ns) // hop_ns) - 1  # largest k with k*hop < end
    return [(k * hop_ns, k * hop_ns + size_ns) for k in range(first_k, last_k + 1)]


def _check_size_hop(size_ns: int, hop_ns: int) -> None:
    if size_ns <= 0 or hop_ns <= 0 or hop_ns > size_ns:
        raise ConfigError(f"need 0 < hop_ns <= size_ns, got size={size_ns} hop={hop_ns}")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window parameters of one modality. Durations in ns, the idle timeout in seconds.

    ``hop_ns`` 0 means half the window. ``min_frames`` applies to frame modalities only.
    """

    modality: str
    size_ns: int
    hop_ns: int = 0
    allowed_lateness_ns: int = NS_PER_S
    idle_timeout_s: float = 5.0
    min_coverage: float = 0.75
    max_gap_fill_ns: int = NS_PER_S // 2
    gap_tolerance_ns: int = 1_000_000
    min_frames: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ConfigError(f"unknown modality {self.modality!r}; expected one of {MODALITIES}")
        if self.hop_ns == 0:
            object.__setattr__(self, "hop_ns", self.size_ns // 2)
        _check_size_hop(self.size_ns, self.hop_ns)
        if self.allowed_lateness_ns < 0 or self.max_gap_fill_ns < 0 or self.gap_tolerance_ns < 0:
            raise ConfigError("lateness, max gap fill and gap tolerance must be >= 0")
        if not self.idle_timeout_s > 0:
            raise ConfigError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ConfigError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.min_frames < 0:
            raise ConfigError(f"min_frames must be >= 0, got {self.min_frames}")

    @property
    def is_frames(self) -> bool:
        """True for vision, depth and thermal (one chunk per frame)."""
        return self.modality in FRAME_MODALITIES

    @classmethod
    def default(cls, modality: str, **overrides: object) -> WindowSpec:
        """The DESIGN table's window for ``modality`` (hop = size / 2), with ``overrides``."""
        if modality not in _DEFAULTS:
            raise ConfigError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        params: dict[str, object] = dict(_DEFAULTS[modality])
        params.update(overrides)
        return cls(modality=modality, **params)  # type: ignore[arg-type]


_MS = 1_000_000
_DEFAULTS: dict[str, dict[str, object]] = {
    "audio": {"size_ns": 2 * NS_PER_S, "min_coverage": 0.75, "max_gap_fill_ns": 500 * _MS,
              "gap_tolerance_ns": 1 * _MS},
    "imu": {"size_ns": 5 * NS_PER_S, "min_coverage": 0.75, "max_gap_fill_ns": 1250 * _MS,
            "gap_tolerance_ns": 5 * _MS},
    "vision": {"size_ns": 2 * NS_PER_S, "min_coverage": 0.5, "max_gap_fill_ns": 1000 * _MS,
               "gap_tolerance_ns": 100 * _MS, "min_frames": 2},
    "depth": {"size_ns": 2 * NS_PER_S, "min_coverage": 0.25, "max_gap_fill_ns": 1500 * _MS,
              "gap_tolerance_ns": 100 * _MS, "min_frames": 1},
    "thermal": {"size_ns": 2 * NS_PER_S, "min_coverage": 0.25, "max_gap_fill_ns": 1500 * _MS,
                "gap_tolerance_ns": 100 * _MS, "min_frames": 1},
}


class WindowKey(NamedTuple):
    """Identity of one window of one device's stream; hashable and ordered."""

    device_id: str
    modality: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`Windower.add` did with a chunk.

    ``keys``: windows the chunk joined. ``late_keys``: windows it belonged to that were
    already closed. ``late``: it joined nothing because of that (a late record).
    ``duplicate``: a chunk with the same ``seq`` was already in its window (ignored).
    """

    keys: tuple[WindowKey, ...]
    late_keys: tuple[WindowKey, ...] = ()
    duplicate: bool = False

    @property
    def late(self) -> bool:
        """True when the chunk joined no window because all of its windows were closed."""
        return not self.keys and bool(self.late_keys) and not self.duplicate


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A closed window and everything the caller needs to assemble, emit or drop it."""

    key: WindowKey
    partition: int
    chunks: tuple[SensorChunk, ...]  # sorted by (ts_ns, seq, offset)
    coverage: float
    gaps_ns: tuple[tuple[int, int], ...]
    gap_filled: bool
    outcome: Outcome
    closed_by: ClosedBy

    @property
    def modality(self) -> str:
        """The window's modality."""
        return self.key.modality

    @property
    def device_id(self) -> str:
        """The device the window belongs to."""
        return self.key.device_id

    @property
    def start_ns(self) -> int:
        """Inclusive start (event time, ns since the epoch)."""
        return self.key.start_ns

    @property
    def end_ns(self) -> int:
        """Exclusive end (event time, ns since the epoch)."""
        return self.key.end_ns

    @property
    def first_offset(self) -> int:
        """Smallest Kafka offset among the window's chunks."""
        return min(c.offset for c in self.chunks)


@dataclass(slots=True)
class _OpenWindow:
    chunks: list[SensorChunk] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    first_offset: int = -1


@dataclass(slots=True)
class _Device:
    windows: dict[int, _OpenWindow] = field(default_factory=dict)  # by start_ns
    closed_end_ns: int | None = None  # largest end of a window closed for this device
    last_seen_s: float = 0.0


def coverage_and_gaps(
    spans_ns: Iterable[tuple[int, int]], start_ns: int, end_ns: int, gap_tolerance_ns: int = 0
) -> tuple[float, tuple[tuple[int, int], ...]]:
    """Fraction of ``[start_ns, end_ns)`` covered by the union of ``spans_ns``, and the gaps.

    Gaps are the uncovered stretches longer than ``gap_tolerance_ns``, in time order.
    """
    size = end_ns - start_ns
    clipped = sorted(
        (max(s, start_ns), min(e, end_ns)) for s, e in spans_ns if e > start_ns and s < end_ns
    )
    covered = 0
    gaps: list[tuple[int, int]] = []
    cursor = start_ns
    for s, e in clipped:
        if s > cursor:
            if s - cursor > gap_tolerance_ns:
                gaps.append((cursor, s))
            cursor = s
        if e > cursor:
            covered += e - cursor
            cursor = e
    if end_ns - cursor > gap_tolerance_ns:
        gaps.append((cursor, end_ns))
    return covered / size, tuple(gaps)


def _spans(chunks: Iterable[SensorChunk], hold_ns: int | None) -> list[tuple[int, int]]:
    """Chunk spans (time-ordered chunks); frames held up to the next one within ``hold_ns``."""
    spans = [(c.ts_ns, max(c.end_ns, c.ts_ns + 1)) for c in chunks]
    if hold_ns is not None:
        for i in range(len(spans) - 1):
            (ts, stop), next_ts = spans[i], spans[i + 1][0]
            if next_ts - ts <= hold_ns:
                spans[i] = (ts, max(stop, next_ts))
    return spans


def restart_watermark_ns(watermark_ns: int | None, unreleased: Iterable[object]) -> int | None:
    """A watermark to store with a commit and give back to :class:`Windower` on restart.

    It is the watermark capped just below the end of every window not yet released, so the
    replay from the committed offset rebuilds those windows exactly while records of windows
    already emitted and acknowledged are rejected as late instead of rebuilding partial
    copies. ``None`` (nothing seen) stays ``None``. ``unreleased`` may hold other tokens
    (e.g. :class:`~streambind.stream.offsets.PendingToken`); only window keys count.
    """
    if watermark_ns is None:
        return None
    ends = [k.end_ns - 1 for k in unreleased if isinstance(k, WindowKey)]
    return min([watermark_ns, *ends])


class Windower:
    """Event-time windows of one (topic, partition), for every device on it.

    ``clock`` returns processing time in seconds (``time.monotonic`` by default); tests inject
    a fake one. ``initial_watermark_ns`` restores a watermark stored with the last commit
    (see :func:`restart_watermark_ns`). Not thread-safe: one per partition, one caller.
    """

    def __init__(
        self,
        spec: WindowSpec,
        clock: Callable[[], float] = time.monotonic,
        *,
        partition: int = 0,
        initial_watermark_ns: int | None = None,
    ) -> None:
        self.spec = spec
        self.partition = partition
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        self._active: OrderedDict[str, None] = OrderedDict()  # least recently seen first
        self._max_ts_ns: int | None = None
        self._floor_watermark_ns = initial_watermark_ns
        self._heap: list[tuple[int, str, int]] = []  # (end_ns, device_id, start_ns)
        self.late_records = 0
        self.duplicate_records = 0

    @property
    def watermark_ns(self) -> int | None:
        """Largest event time seen minus the allowed lateness; None before any record."""
        wm = None if self._max_ts_ns is None else self._max_ts_ns - self.spec.allowed_lateness_ns
        if self._floor_watermark_ns is None:
            return wm
        return self._floor_watermark_ns if wm is None else max(wm, self._floor_watermark_ns)

    def add(self, chunk: SensorChunk) -> AddResult:
        """Put ``chunk`` into its open windows; report joined, late and duplicate outcomes."""
        spec = self.spec
        if chunk.modality != spec.modality:
            raise ConfigError(f"{spec.modality} windower got a {chunk.modality} chunk")
        if self._max_ts_ns is None or chunk.ts_ns > self._max_ts_ns:
            self._max_ts_ns = chunk.ts_ns
        device = self._devices.get(chunk.device_id)
        if device is None:
            device = self._devices[chunk.device_id] = _Device()
        device.last_seen_s = self._clock()
        self._active[chunk.device_id] = None
        self._active.move_to_end(chunk.device_id)
        if spec.is_frames:
            ranges = window_ranges(chunk.ts_ns, spec.size_ns, spec.hop_ns)
        else:
            ranges = windows_overlapping(chunk.ts_ns, chunk.end_ns, spec.size_ns, spec.hop_ns)
        closed_below = self._closed_through(device)
        open_ranges = [r for r in ranges if closed_below is None or r[1] > closed_below]
        late = tuple(self._key(chunk.device_id, r) for r in ranges if r not in open_ranges)
        for start, _ in open_ranges:
            window = device.windows.get(start)
            if window is not None and chunk.seq in window.seqs:
                self.duplicate_records += 1
                logger.debug("duplicate %s seq %d ignored", chunk.device_id, chunk.seq)
                return AddResult(keys=(), late_keys=late, duplicate=True)
        keys = []
        for start, end in open_ranges:
            window = device.windows.get(start)
            if window is None:
                window = device.windows[start] = _OpenWindow(first_offset=chunk.offset)
                heapq.heappush(self._heap, (end, chunk.device_id, start))
            window.chunks.append(chunk)
            window.seqs.add(chunk.seq)
            window.first_offset = min(window.first_offset, chunk.offset)
            keys.append(self._key(chunk.device_id, (start, end)))
        result = AddResult(keys=tuple(keys), late_keys=late)
        if result.late:
            self.late_records += 1
            logger.debug("late %s record at offset %d", chunk.device_id, chunk.offset)
        return result

    def poll(self) -> list[ClosedWindow]:
        """Close and return the windows the watermark has passed and those of idle devices.

        Returned in (end, device, start) order.
        """
        closed: list[ClosedWindow] = []
        wm = self.watermark_ns
        while self._heap and wm is not None and self._heap[0][0] <= wm:
            end, device_id, start = heapq.heappop(self._heap)
            window = self._devices[device_id].windows.pop(start, None)
            if window is not None:
                closed.append(self._close(device_id, start, window, "watermark"))
        now_s = self._clock()
        while self._active:  # O(1) when no device is idle: the clock never goes back
            device_id = next(iter(self._active))
            device = self._devices[device_id]
            if now_s - device.last_seen_s <= self.spec.idle_timeout_s:
                break
            del self._active[device_id]
            closed.extend(self._close_device(device_id, device, "idle"))
        closed.sort(key=lambda w: (w.end_ns, w.device_id, w.start_ns))
        return closed

    def flush(self) -> list[ClosedWindow]:
        """Close every open window now (shutdown, end of a bounded stream)."""
        closed: list[ClosedWindow] = []
        for device_id, device in self._devices.items():
            closed.extend(self._close_device(device_id, device, "flush"))
        self._heap.clear()
        closed.sort(key=lambda w: (w.end_ns, w.device_id, w.start_ns))
        return closed

    def open_windows(self) -> dict[WindowKey, int]:
        """Every open window's key and the smallest Kafka offset among its chunks."""
        return {
            self._key(device_id, (start, start + self.spec.size_ns)): window.first_offset
            for device_id, device in self._devices.items()
            for start, window in device.windows.items()
        }

    def first_open_offset(self) -> int | None:
        """Smallest offset of any record in an open window, or None when none is open."""
        offsets = self.open_windows().values()
        return min(offsets) if offsets else None

    # -- internals ---------------------------------------------------------------------

    def _key(self, device_id: str, rng: tuple[int, int]) -> WindowKey:
        return WindowKey(device_id, self.spec.modality, rng[0], rng[1])

    def _closed_through(self, device: _Device) -> int | None:
        """Windows of ``device`` whose end is <= this are closed (None: none is)."""
        wm = self.watermark_ns
        if device.closed_end_ns is None:
            return wm
        return device.closed_end_ns if wm is None else max(wm, device.closed_end_ns)

    def _close_device(self, device_id: str, device: _Device, by: ClosedBy) -> list[ClosedWindow]:
        closed = [self._close(device_id, s, w, by) for s, w in sorted(device.windows.items())]
        device.windows.clear()
        return closed

    def _close(self, device_id: str, start: int, window: _OpenWindow, by: ClosedBy) -> ClosedWindow:
        spec = self.spec
        end = start + spec.size_ns
        device = self._devices[device_id]
        if device.closed_end_ns is None or end > device.closed_end_ns:
            device.closed_end_ns = end
        chunks = tuple(sorted(window.chunks, key=lambda c: (c.ts_ns, c.seq, c.offset)))
        coverage, gaps = coverage_and_gaps(
            _spans(chunks, spec.max_gap_fill_ns if spec.is_frames else None),
            start,
            end,
            spec.gap_tolerance_ns,
        )
        longest_gap = max((e - s for s, e in gaps), default=0)
        ok = coverage >= spec.min_coverage and longest_gap <= spec.max_gap_fill_ns
        if spec.is_frames and len(chunks) < spec.min_frames:
            ok = False
        return ClosedWindow(
            key=self._key(device_id, (start, end)),
            partition=chunks[0].partition if chunks else self.partition,
            chunks=chunks,
            coverage=coverage,
            gaps_ns=gaps,
            gap_filled=ok and bool(gaps),
            outcome="ok" if ok else "low_coverage",
            closed_by=by,
        )
