"""Event-time windows: epoch-aligned ranges, a watermark per device, idle timeout, coverage.

One :class:`Windower` serves one (topic, partition) and tracks every device on it, each on
its own event time. Windows are ``[k * hop, k * hop + size)`` for integer ``k``
(epoch-aligned, so a replay rebuilds the same boundaries). Membership:

* audio and imu chunks join every window their span ``[ts_ns, end_ns)`` overlaps, so a long
  audio chunk, or any chunk when ``hop < size``, joins several windows;
* frames (vision, depth, thermal) join the windows that contain their ``ts_ns``; their span
  ``[ts_ns, end_ns)`` (``end_ns`` = ``ts_ns`` + the frame interval) only counts for coverage.

Closing and lateness are decided per device and by that device's record order alone (never
by how often :meth:`poll` is called, nor by other devices): a device's watermark is the
largest ``ts_ns`` it sent minus the allowed lateness; a window of the device whose end is at
or below its watermark is closed, and so is every window of the device up to the end of the
last window closed for it by the idle timeout (no record from the device for
``idle_timeout_s`` of processing time). A chunk's window that is already closed is *late*
for it: the chunk does not join it and the window key is reported in
:attr:`AddResult.late_keys`; a chunk that joins nothing because of that is a late record
(:attr:`AddResult.late`, counted in :attr:`Windower.late_records`). A device whose clock is
offset, or that uploads a backlog, therefore only meets its own closed windows. The idle
timeout and the device TTL are processing time (injected clock), the one
non-deterministic input.

State is bounded: a device with no open window and no record for ``device_ttl_s`` is
forgotten (:attr:`Windower.forgotten_devices`), but only once its last record lies below
``safe_offset()`` (the partition's commit point), so a replay never meets a forgotten
device's records. Frame windows retain only candidate frames (see
:mod:`streambind.stream.window_buffer`); :attr:`Windower.held_bytes` is the payload bytes
open windows retain (a chunk in two overlapping windows counts twice).

Coverage of a closed window is the fraction of ``[start_ns, end_ns)`` covered by the union of
its chunks' spans (clipped to the window). A frame is sample-and-hold: its span reaches on to
the next frame of the window when that comes within ``max_gap_fill_ns``, so frame coverage
does not depend on the frame rate, only on missing frames. Uncovered stretches longer than
the spec's ``gap_tolerance_ns`` are gaps. The outcome is ``ok`` when coverage >=
``min_coverage``, the longest gap is <= ``max_gap_fill_ns`` and (frames) the window holds at
least ``min_frames`` frames; otherwise ``low_coverage`` (the caller drops and counts it). An
``ok`` window with gaps is flagged ``gap_filled``: :mod:`streambind.stream.assemble` fills
them (audio: zeros, imu: linear interpolation; frames: the selected frames skip them).

Restart: :class:`DeviceRestart` (per device: watermark floor, emitted-through end, windows
already released beyond it) given to the constructor makes a replay from the committed
offset rebuild exactly the windows that were open, and reject the records of windows
already emitted (counted in :attr:`Windower.replayed_records`, not as late).
"""

from __future__ import annotations

import heapq
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping

from streambind import metrics
from streambind.errors import ConfigError
from streambind.stream.chunks import SensorChunk
from streambind.stream.window_buffer import WindowBuffer, coverage_and_gaps, selection_of
from streambind.stream.window_device import DeviceWindows, latest, restart_states
from streambind.stream.window_types import (
    NS_PER_S,
    AddResult,
    ClosedBy,
    ClosedWindow,
    DeviceRestart,
    Outcome,
    WindowKey,
    WindowSpec,
    window_ranges,
    windows_overlapping,
)

__all__ = [
    "NS_PER_S", "AddResult", "ClosedBy", "ClosedWindow", "DeviceRestart", "Outcome",
    "WindowKey", "WindowSpec", "Windower", "coverage_and_gaps", "tracked_devices",
    "window_ranges", "windows_overlapping",
]

logger = logging.getLogger(__name__)

TTL_SWEEP_S = 1.0  # at most one device-TTL sweep per second of processing time


_LIVE: weakref.WeakSet[Windower] = weakref.WeakSet()


def tracked_devices(modality: str | None = None) -> int:
    """Devices tracked by the live windowers of this process (of ``modality``, or all; a
    device on two modalities counts twice). Exported as ``streambind_tracked_devices``."""
    return sum(len(w._devices) for w in list(_LIVE)
               if modality is None or w.spec.modality == modality)


metrics.TRACKED_DEVICES.set_function(tracked_devices)


class Windower:
    """Event-time windows of one (topic, partition), for every device on it.

    ``clock`` returns processing time in seconds (``time.monotonic`` by default); tests inject
    a fake one. ``restored`` gives devices their restart state; ``initial_watermark_ns`` is a
    watermark floor for devices without one (restart state of the old per-partition form).
    ``safe_offset`` returns the partition's commit point (None: unknown); a device is only
    forgotten once its last record lies below it. Not thread-safe: one per partition.
    """

    def __init__(
        self,
        spec: WindowSpec,
        clock: Callable[[], float] = time.monotonic,
        *,
        partition: int = 0,
        initial_watermark_ns: int | None = None,
        restored: Mapping[str, DeviceRestart] | None = None,
        safe_offset: Callable[[], int | None] | None = None,
    ) -> None:
        self.spec = spec
        self.partition = partition
        self.safe_offset = safe_offset
        self._clock = clock
        self._select = selection_of(spec.modality)
        self._default_floor_ns = initial_watermark_ns
        self._devices: dict[str, DeviceWindows] = {}
        self._active: OrderedDict[str, None] = OrderedDict()  # seen, least recently first
        self._idle: OrderedDict[str, float] = OrderedDict()  # no open window, since when
        self._due: set[str] = set()  # devices whose watermark passed an open window's end
        self._next_sweep_s = float("-inf")
        self.held_bytes = 0
        self.late_records = 0
        self.duplicate_records = 0
        self.replayed_records = 0
        self.over_budget_chunks = 0
        self.forgotten_devices = 0
        now_s = clock()
        for device_id, state in (restored or {}).items():
            device = self._devices[device_id] = DeviceWindows(
                floor_wm_ns=state.watermark_ns,
                closed_end_ns=state.through_ns,
                restored_through_ns=state.through_ns,
                reopen=set(state.reopen_starts),
                last_seen_s=now_s,
            )
            device.floor_wm_ns = latest(device.floor_wm_ns, initial_watermark_ns)
            self._idle[device_id] = now_s
        _LIVE.add(self)

    # -- queries -------------------------------------------------------------------------

    @property
    def devices(self) -> list[str]:
        """The devices tracked now."""
        return list(self._devices)

    def idle_in_s(self) -> float | None:
        """Seconds (on the windower's clock) until the least recently seen device times out
        (its open windows then close in :meth:`poll`); None when no device is active."""
        if not self._active:
            return None
        device = self._devices[next(iter(self._active))]
        return device.last_seen_s + self.spec.idle_timeout_s - self._clock()

    def watermark_ns(self, device_id: str) -> int | None:
        """``device_id``'s watermark (its largest event time minus the allowed lateness, or
        its restored floor); None for a device not tracked or without a record."""
        device = self._devices.get(device_id)
        return None if device is None else device.watermark(self.spec.allowed_lateness_ns)

    def closed_through_ns(self, device_id: str) -> int | None:
        """Windows of ``device_id`` ending at or before this are closed (None: none is)."""
        device = self._devices.get(device_id)
        if device is None:
            return None
        return latest(device.watermark(self.spec.allowed_lateness_ns), device.closed_end_ns)

    def open_windows(self) -> dict[WindowKey, int]:
        """Every open window's key and the smallest Kafka offset among its chunks."""
        return {
            self._key(device_id, (start, window.end_ns)): window.first_offset
            for device_id, device in self._devices.items()
            for start, window in device.windows.items()
        }

    def first_open_offset(self) -> int | None:
        """Smallest offset of any record in an open window, or None when none is open."""
        offsets = self.open_windows().values()
        return min(offsets) if offsets else None

    def restart_states(self, unreleased: Iterable[Hashable]) -> dict[str, DeviceRestart]:
        """Per tracked device, the state to store with a commit (see
        :func:`~streambind.stream.window_device.restart_states`)."""
        return restart_states(self._devices, self.spec, unreleased)

    # -- input ---------------------------------------------------------------------------

    def add(self, chunk: SensorChunk) -> AddResult:
        """Put ``chunk`` into its device's open windows; report joined, late, duplicate."""
        spec = self.spec
        if chunk.modality != spec.modality:
            raise ConfigError(f"{spec.modality} windower got a {chunk.modality} chunk")
        device_id = chunk.device_id
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = DeviceWindows(floor_wm_ns=self._default_floor_ns)
        device.last_seen_s = self._clock()
        device.last_offset = max(device.last_offset, chunk.offset)
        if device.max_ts_ns is None or chunk.ts_ns > device.max_ts_ns:
            device.max_ts_ns = chunk.ts_ns
        self._active[device_id] = None
        self._active.move_to_end(device_id)
        if spec.is_frames:
            ranges = window_ranges(chunk.ts_ns, spec.size_ns, spec.hop_ns)
        else:
            ranges = windows_overlapping(chunk.ts_ns, chunk.end_ns, spec.size_ns, spec.hop_ns)
        wm = device.watermark(spec.allowed_lateness_ns)
        closed_below = latest(wm, device.closed_end_ns)
        open_ranges = [r for r in ranges if closed_below is None or r[1] > closed_below
                       or r[0] in device.reopen]
        late = tuple(self._key(device_id, r) for r in ranges if r not in open_ranges)
        for start, _ in open_ranges:
            window = device.windows.get(start)
            if window is not None and chunk.seq in window.seqs:
                self.duplicate_records += 1
                logger.debug("duplicate %s seq %d ignored", device_id, chunk.seq)
                return AddResult(keys=(), late_keys=late, duplicate=True)
        keys = []
        for start, end in open_ranges:
            window = device.windows.get(start)
            if window is None:
                window = device.windows[start] = WindowBuffer(start, end, self._select,
                                                              spec.max_window_bytes)
                heapq.heappush(device.starts, start)
            over = window.over_budget
            self.held_bytes += window.add(chunk)
            self.over_budget_chunks += window.over_budget - over
            keys.append(self._key(device_id, (start, end)))
        if device.windows:
            self._idle.pop(device_id, None)
            if wm is not None and device.starts[0] + spec.size_ns <= wm:
                self._due.add(device_id)
        elif device_id not in self._idle:
            self._idle[device_id] = device.last_seen_s
        through = device.restored_through_ns
        replayed = (not keys and bool(late) and through is not None
                    and all(k.end_ns <= through for k in late))
        result = AddResult(keys=tuple(keys), late_keys=late, replayed=replayed)
        if result.late:
            self.late_records += 1
            logger.debug("late %s record at offset %d", device_id, chunk.offset)
        elif replayed:
            self.replayed_records += 1
        return result

    # -- closing -------------------------------------------------------------------------

    def poll(self) -> list[ClosedWindow]:
        """Close and return the windows whose device's watermark passed their end and those
        of idle devices; forget expired devices. Returned in (end, device, start) order.

        Cost: the devices whose watermark moved past a window end, plus O(1) when no
        device is idle, whatever the number of devices.
        """
        closed: list[ClosedWindow] = []
        lateness = self.spec.allowed_lateness_ns
        size = self.spec.size_ns
        for device_id in self._due:
            device = self._devices[device_id]
            wm = device.watermark(lateness)
            while device.starts and wm is not None and device.starts[0] + size <= wm:
                start = heapq.heappop(device.starts)
                window = device.windows.pop(start)
                closed.append(self._close(device_id, device, start, window, "watermark"))
            if not device.windows:
                self._idle[device_id] = self._clock()
        self._due.clear()
        now_s = self._clock()
        while self._active:  # O(1) when no device is idle: the clock never goes back
            device_id = next(iter(self._active))
            device = self._devices[device_id]
            if now_s - device.last_seen_s <= self.spec.idle_timeout_s:
                break
            del self._active[device_id]
            closed.extend(self._close_device(device_id, device, "idle"))
        if now_s >= self._next_sweep_s:
            self._next_sweep_s = now_s + min(TTL_SWEEP_S, self.spec.device_ttl_s)
            self._expire(now_s)
        closed.sort(key=lambda w: (w.end_ns, w.device_id, w.start_ns))
        return closed

    def flush(self) -> list[ClosedWindow]:
        """Close every open window now (shutdown, end of a bounded stream)."""
        closed: list[ClosedWindow] = []
        for device_id, device in self._devices.items():
            closed.extend(self._close_device(device_id, device, "flush"))
        self._due.clear()
        closed.sort(key=lambda w: (w.end_ns, w.device_id, w.start_ns))
        return closed

    # -- internals -----------------------------------------------------------------------

    def _key(self, device_id: str, rng: tuple[int, int]) -> WindowKey:
        return WindowKey(device_id, self.spec.modality, rng[0], rng[1])

    def _expire(self, now_s: float) -> None:
        """Forget devices with no open window and no record for ``device_ttl_s``."""
        ttl_s = self.spec.device_ttl_s
        safe: int | None = None
        checked_safe = False
        rotated: set[str] = set()
        while self._idle:
            device_id, since_s = next(iter(self._idle.items()))
            if now_s - since_s <= ttl_s or device_id in rotated:
                break
            device = self._devices[device_id]
            if now_s - device.last_seen_s <= ttl_s:  # seen since (late records): look later
                self._idle.move_to_end(device_id)
                self._idle[device_id] = device.last_seen_s
                rotated.add(device_id)
                continue
            if self.safe_offset is not None:
                if not checked_safe:
                    safe, checked_safe = self.safe_offset(), True
                if device.last_offset >= 0 and (safe is None or device.last_offset >= safe):
                    break  # a replay could still meet its records: keep its state for now
            del self._idle[device_id]
            self._active.pop(device_id, None)
            del self._devices[device_id]
            self.forgotten_devices += 1
            logger.debug("forgot device %s (idle %.0f s)", device_id, now_s - device.last_seen_s)

    def _close_device(self, device_id: str, device: DeviceWindows,
                      by: ClosedBy) -> list[ClosedWindow]:
        closed = [self._close(device_id, device, s, w, by)
                  for s, w in sorted(device.windows.items())]
        device.windows.clear()
        device.starts.clear()
        self._due.discard(device_id)
        if device_id not in self._idle:
            self._idle[device_id] = self._clock()
        return closed

    def _close(self, device_id: str, device: DeviceWindows, start: int, window: WindowBuffer,
               by: ClosedBy) -> ClosedWindow:
        spec = self.spec
        end = window.end_ns
        self.held_bytes -= window.nbytes
        device.closed_end_ns = latest(device.closed_end_ns, end)
        device.reopen.discard(start)
        chunks = window.retained()
        coverage, gaps = coverage_and_gaps(
            window.coverage_spans(spec.max_gap_fill_ns if spec.is_frames else None),
            start, end, spec.gap_tolerance_ns)
        longest_gap = max((e - s for s, e in gaps), default=0)
        ok = coverage >= spec.min_coverage and longest_gap <= spec.max_gap_fill_ns
        if spec.is_frames and window.frames < spec.min_frames:
            ok = False
        if not chunks:
            ok = False
        return ClosedWindow(
            key=self._key(device_id, (start, end)),
            partition=self.partition,
            chunks=chunks,
            coverage=coverage,
            gaps_ns=gaps,
            gap_filled=ok and bool(gaps),
            outcome="ok" if ok else "low_coverage",
            closed_by=by,
            frames=window.frames,
            over_budget=window.over_budget,
            min_offset=window.first_offset,
        )
