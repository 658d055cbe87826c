"""Window arithmetic and the windower's value types: epoch-aligned ranges, the per-modality
:class:`WindowSpec`, window keys, add results, closed windows and per-device restart state.

Pure arithmetic, no state; :mod:`streambind.stream.windows` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from streambind.errors import ConfigError
from streambind.stream.chunks import FRAME_MODALITIES, MODALITIES, SensorChunk
from streambind.units import NS_PER_S

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
    """Window parameters of one modality. Durations in ns, timeouts in seconds.

    ``hop_ns`` 0 means half the window. ``min_frames`` applies to frame modalities only.
    ``device_ttl_s``: a device with no open window and no record for this long is
    forgotten. ``max_window_bytes``: payload bytes one open window retains (None: no bound).
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
    device_ttl_s: float = 600.0
    max_window_bytes: int | None = None

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
        if not self.device_ttl_s > 0:
            raise ConfigError(f"device_ttl_s must be > 0, got {self.device_ttl_s}")
        if self.max_window_bytes is not None and self.max_window_bytes <= 0:
            raise ConfigError(f"max_window_bytes must be > 0, got {self.max_window_bytes}")

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
    ``replayed``: it joined nothing because its windows were emitted before a restart.
    """

    keys: tuple[WindowKey, ...]
    late_keys: tuple[WindowKey, ...] = ()
    duplicate: bool = False
    replayed: bool = False

    @property
    def late(self) -> bool:
        """True when the chunk joined no window because all of its windows were closed."""
        return (not self.keys and bool(self.late_keys) and not self.duplicate
                and not self.replayed)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A closed window and everything the caller needs to assemble, emit or drop it.

    ``chunks``: the retained chunks (frames: the candidates), time-ordered. ``frames``:
    how many chunks joined (all frames, retained or not). ``over_budget``: chunks not
    retained because of ``max_window_bytes``.
    """

    key: WindowKey
    partition: int
    chunks: tuple[SensorChunk, ...]  # sorted by (ts_ns, seq, offset)
    coverage: float
    gaps_ns: tuple[tuple[int, int], ...]
    gap_filled: bool
    outcome: Outcome
    closed_by: ClosedBy
    frames: int = 0
    over_budget: int = 0
    min_offset: int = -1  # smallest offset of any chunk that joined, retained or not

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
        """Smallest Kafka offset among the chunks that joined the window."""
        if self.min_offset >= 0:
            return self.min_offset
        return min(c.offset for c in self.chunks)


@dataclass(frozen=True, slots=True)
class DeviceRestart:
    """One device's restart state (see :mod:`streambind.stream.restart`).

    ``watermark_ns``: floor of the device's watermark (below the end of every window not yet
    released). ``through_ns``: every window of the device ending at or before it was closed
    before the restart; those among them not released yet are listed in ``reopen_starts``
    (by start) and rebuilt by the replay, the others were emitted or dropped and their
    records are rejected as replayed. ``sink_through_ns``: the end through which the sink's
    state ``sink`` is (restored by the caller, not by the windower).
    """

    watermark_ns: int | None = None
    through_ns: int | None = None
    reopen_starts: tuple[int, ...] = ()
    sink_through_ns: int | None = None
    sink: dict | None = None
