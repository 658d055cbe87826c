"""One device's window state inside a :class:`~streambind.stream.windows.Windower`, and the
restart state computed from it.

:class:`DeviceWindows` holds a device's open windows (by start), its largest event time,
its restored watermark floor and what was emitted through before a restart.
:func:`restart_states` turns the devices of one partition, and the window keys whose
outputs are not acknowledged yet, into the per-device :class:`DeviceRestart` stored with a
commit, so that a replay from the committed offset rebuilds exactly those windows (see
"Restart" in :mod:`streambind.stream.windows`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from streambind.stream.window_buffer import WindowBuffer
from streambind.stream.window_types import DeviceRestart, WindowKey, WindowSpec


def latest(a: int | None, b: int | None) -> int | None:
    """The larger of two event times, None standing for "none yet"."""
    if a is None:
        return b
    return a if b is None or a >= b else b


@dataclass(slots=True)
class DeviceWindows:
    """A device's open windows and event-time state on one partition (one modality)."""

    windows: dict[int, WindowBuffer] = field(default_factory=dict)  # by start_ns
    starts: list[int] = field(default_factory=list)  # heap of the keys of ``windows``
    max_ts_ns: int | None = None
    floor_wm_ns: int | None = None  # restored watermark
    closed_end_ns: int | None = None  # largest end of a window closed for this device
    restored_through_ns: int | None = None
    reopen: set[int] = field(default_factory=set)  # restored: unreleased starts to rebuild
    last_seen_s: float = 0.0
    last_offset: int = -1

    def watermark(self, lateness_ns: int) -> int | None:
        """Largest event time minus ``lateness_ns``, or the restored floor if higher."""
        wm = None if self.max_ts_ns is None else self.max_ts_ns - lateness_ns
        return latest(wm, self.floor_wm_ns)


def restart_states(devices: Mapping[str, DeviceWindows], spec: WindowSpec,
                   unreleased: Iterable[Hashable]) -> dict[str, DeviceRestart]:
    """Per device in ``devices``, the state to store with a commit (``sink`` left unset).

    ``unreleased``: the partition's unreleased holds (window keys count, other tokens are
    ignored): closed or open windows whose outputs are not acknowledged yet. A replay from
    the committed offset with this state rebuilds exactly those windows.
    """
    lowest: dict[str, int] = {}
    starts: dict[str, list[int]] = {}
    for key in unreleased:
        if isinstance(key, WindowKey) and key.device_id in devices:
            lowest[key.device_id] = min(lowest.get(key.device_id, key.end_ns), key.end_ns)
            starts.setdefault(key.device_id, []).append(key.start_ns)
    out: dict[str, DeviceRestart] = {}
    lateness = spec.allowed_lateness_ns
    size = spec.size_ns
    for device_id, device in devices.items():
        for start in device.reopen:  # restored, not rebuilt yet: still to come
            lowest[device_id] = min(lowest.get(device_id, start + size), start + size)
            starts.setdefault(device_id, []).append(start)
        wm = device.watermark(lateness)
        through = latest(wm, device.closed_end_ns)
        if through is None:
            continue
        low = lowest.get(device_id)
        if low is not None and wm is not None:
            wm = min(wm, low - 1)
        reopen = tuple(sorted({s for s in starts.get(device_id, ()) if s + size <= through}))
        out[device_id] = DeviceRestart(
            watermark_ns=wm, through_ns=through, reopen_starts=reopen,
            sink_through_ns=through if low is None else min(through, low - 1))
    return out
