"""Per-partition state of the runner (windower, offsets, restart state) and the idle clock
that the windowers run on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import TopicPartition

from streambind.stream.offsets import OffsetTracker
from streambind.stream.restart import decode_doc, encode_doc
from streambind.stream.windows import Windower, WindowSpec


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
    """Per assigned partition: windower, offset tracker, and restart bookkeeping.

    Build one with :meth:`restored` from the restart document stored with the committed
    offset; :meth:`restart_doc` makes the document to store with the next commit. ``sink``
    (optional) is the window sink whose per-device restart state travels with it.
    """

    tp: TopicPartition
    windower: Windower
    tracker: OffsetTracker
    devices: set[str] = field(default_factory=set)  # unused: the windower knows its devices
    released_end: dict[str, int] = field(default_factory=dict)  # device -> max released end
    sink: Any = None

    def __post_init__(self) -> None:
        if self.windower.safe_offset is None:  # forget a device only below the commit point
            self.windower.safe_offset = self.commit_point

    @classmethod
    def restored(
        cls,
        tp: TopicPartition,
        spec: WindowSpec,
        clock: Callable[[], float],
        doc: Mapping[str, Any] | None = None,
        sink: Any = None,
        modality: str | None = None,
    ) -> PartitionState:
        """A partition's state rebuilt from ``doc`` (its restart document, or nothing).

        The sink's state of every device in ``doc`` is restored before any of its windows
        is processed (``sink.restore_state(device, modality, state)``, when the sink has it).
        ``modality``: the stream's name when it is not ``spec.modality``, i.e. a bound
        sensor windowed under its carrier (:class:`~streambind.stream.custom.NamedWindower`).
        """
        name = modality or spec.modality
        states, legacy_wm = decode_doc(dict(doc or {}))
        restore = getattr(sink, "restore_state", None)
        for device_id, state in states.items():
            if state.sink is not None and restore is not None:
                restore(device_id, name, state.sink)
        kwargs = {"partition": tp.partition, "restored": states,
                  "initial_watermark_ns": legacy_wm}
        if name != spec.modality:
            from streambind.stream.custom import NamedWindower

            windower: Windower = NamedWindower(name, spec, clock, **kwargs)
        else:
            windower = Windower(spec, clock, **kwargs)
        return cls(tp, windower, OffsetTracker(), sink=sink)

    def commit_point(self) -> int | None:
        """The offset this partition could commit now (None before its first record)."""
        return self.tracker.committable().get(self.tp.partition)

    def restart_doc(self) -> dict[str, Any]:
        """The restart document to store with a commit of :meth:`commit_point`."""
        states = self.windower.restart_states(self.tracker.unreleased(self.tp.partition))
        take = getattr(self.sink, "restart_state", None)
        if take is not None:
            modality = getattr(self.windower, "name", self.windower.spec.modality)
            for device_id, state in list(states.items()):
                if state.sink_through_ns is None:
                    continue
                sink_state = take(device_id, modality, state.sink_through_ns)
                if sink_state is not None:
                    states[device_id] = replace(state, sink=sink_state)
        tracked = set(states)
        for device_id in [d for d in self.released_end if d not in tracked]:
            del self.released_end[device_id]  # forgotten devices leave no trace
        self.devices.intersection_update(tracked)
        return encode_doc(states)
