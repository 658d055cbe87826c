"""Per-partition state of the runner and the idle clock that the windowers run on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import TopicPartition

from streambind.stream.offsets import OffsetTracker
from streambind.stream.windows import Windower, WindowKey


class IdleClock:
    """Processing time for idle timeouts that stands still while frozen.

    The runner freezes it while it is behind (replaying a backlog) or paused for
    backpressure, so a device is never declared idle only because its records are still
    waiting in Kafka; windows then close by the watermark, as they would have live.
    """

    def __init__(self, base: Callable[[], float]) -> None:
        self._base = base
        self._offset_s = 0.0
        self._frozen_at_s: float | None = None

    def __call__(self) -> float:
        now_s = self._base() if self._frozen_at_s is None else self._frozen_at_s
        return now_s - self._offset_s

    def freeze(self) -> None:
        """Stop the clock (idempotent)."""
        if self._frozen_at_s is None:
            self._frozen_at_s = self._base()

    def thaw(self) -> None:
        """Restart the clock where it stopped (idempotent)."""
        if self._frozen_at_s is not None:
            self._offset_s += self._base() - self._frozen_at_s
            self._frozen_at_s = None


@dataclass(slots=True)
class PartitionState:
    """Per assigned partition: windower, offset tracker, and restart bookkeeping."""

    tp: TopicPartition
    windower: Windower
    tracker: OffsetTracker
    devices: set[str] = field(default_factory=set)
    released_end: dict[str, int] = field(default_factory=dict)  # device -> max released end
    floors: dict[str, int] = field(default_factory=dict)  # device -> emitted through (restart)

    def device_floors(self, unreleased: list[WindowKey], wm: int | None) -> dict[str, int]:
        """Per device, the end through which every window was emitted or dropped.

        Stored with the commit so that a restarted consumer does not emit partial copies of
        windows that the replay from the committed offset only partly rebuilds.
        """
        lowest_open: dict[str, int] = {}
        for key in unreleased:
            if key.end_ns <= self.floors.get(key.device_id, -1):
                continue  # rebuilt by a replay and dropped when it closes
            lowest_open[key.device_id] = min(lowest_open.get(key.device_id, key.end_ns),
                                             key.end_ns)
        floors = {}
        for device in sorted(self.devices | set(self.floors)):
            released = max(self.released_end.get(device, -1), self.floors.get(device, -1))
            if released < 0:
                continue
            floor_ns = min(released, lowest_open.get(device, released + 1) - 1)
            if wm is None or floor_ns > wm:
                floors[device] = floor_ns
        return floors
