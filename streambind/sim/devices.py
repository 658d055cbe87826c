"""Simulated devices: activity scripts from the world and lazy per-modality record streams.

A device lives in one room (its camera placement, walls, room depth and temperature are
drawn once) and follows a script of activity segments drawn one at a time, so a script can
run forever. Each modality of a device is a generator of ``(true_ts_ns, modality, Record)``
in event-time order that renders only the chunk it is about to yield, with the activity
and the segment's nuisance in force at the chunk's start (:mod:`streambind.world`).

Timestamps on the wire are the device's clock: true time plus its fixed ``offset_ns`` plus
a small skew and per-record jitter.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from streambind.sim.records import Record, audio_record, frame_record, imu_record
from streambind.units import NS_PER_S
from streambind.world.activities import ACTIVITIES
from streambind.world.nuisance import Nuisance, sample_nuisance
from streambind.world.raster import celsius_to_u16
from streambind.world.render import (
    FRAME_SIZE,
    SENSOR_SIZE,
    render_audio,
    render_depth,
    render_frame,
    render_imu,
    render_thermal,
)

S = NS_PER_S  # short name for event-time arithmetic
MS = 1_000_000
# What stays fixed for one device's room from segment to segment.
_ROOM_FIELDS = ("zoom", "shift", "brightness", "tint", "wall", "floor", "horizon", "wall_m",
                "ambient_c", "hum_hz", "hum_level", "room_noise", "rotation")
_KEEP_SEGMENTS_S = 120  # segments ending this long before the newest request are forgotten


@dataclass(frozen=True)
class Segment:
    """One activity segment of a device's script (true time, ns)."""

    start_ns: int
    end_ns: int
    activity: str
    nuisance: Nuisance


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(str(p) for p in (seed, *parts)).encode()))


class Script:
    """A device's activity segments, drawn lazily; ``end_ns=None`` runs forever.

    ``on_segment(segment)`` is called once per segment, when it is first drawn (which is
    when the first chunk inside it is rendered), so ground truth can be written live.
    """

    def __init__(self, device: str, start_ns: int, end_ns: int | None, seed: int,
                 on_segment: Callable[[Segment], None] | None = None) -> None:
        self.device = device
        self.end_ns = end_ns
        self._rng = _rng(seed, "script", device)
        self._room = sample_nuisance(_rng(seed, "room", device))
        self._segments: deque[Segment] = deque()
        self._next_ns = start_ns
        self._last: str | None = None
        self._on_segment = on_segment

    def _draw(self) -> Segment:
        names = [a for a in ACTIVITIES if a.name != self._last]  # a change every segment
        act = names[int(self._rng.integers(len(names)))]
        length_ns = round(self._rng.uniform(*act.segment_s) * S)
        end = self._next_ns + length_ns
        if self.end_ns is not None:
            end = min(end, self.end_ns)
        fresh = sample_nuisance(self._rng)
        nuisance = dataclasses.replace(
            fresh, **{f: getattr(self._room, f) for f in _ROOM_FIELDS})
        seg = Segment(self._next_ns, end, act.name, nuisance)
        self._next_ns, self._last = end, act.name
        self._segments.append(seg)
        if self._on_segment is not None:
            self._on_segment(seg)
        return seg

    def done(self, ts_ns: int) -> bool:
        """Whether ``ts_ns`` is past the end of a bounded script."""
        return self.end_ns is not None and ts_ns >= self.end_ns

    def at(self, ts_ns: int) -> Segment:
        """The segment in force at ``ts_ns`` (drawing new segments as needed)."""
        while self._next_ns <= ts_ns and not self.done(self._next_ns):
            self._draw()
        while len(self._segments) > 2 and self._segments[0].end_ns < ts_ns - _KEEP_SEGMENTS_S * S:
            self._segments.popleft()
        for seg in reversed(self._segments):
            if seg.start_ns <= ts_ns:
                return seg
        return self._segments[0]

    def segments(self) -> list[Segment]:
        """Draw and return every segment of a bounded script."""
        if self.end_ns is None:
            raise ValueError("an unbounded script has no complete list of segments")
        out = []
        while not self.done(self._next_ns):
            out.append(self._draw())
        return out


class Device:
    """One simulated device: its sampling rates, clock and per-modality record streams."""

    def __init__(self, name: str, start_ns: int, end_ns: int | None, seed: int, *,
                 offset_ns: int = 0, on_segment: Callable[[Segment], None] | None = None,
                 frame_size: tuple[int, int] = FRAME_SIZE,
                 sensor_size: tuple[int, int] = SENSOR_SIZE) -> None:
        self.name = name
        self.seed = seed
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.offset_ns = offset_ns
        self.script = Script(name, start_ns, end_ns, seed, on_segment)
        rng = _rng(seed, "rates", name)
        self.audio_rate = int(rng.choice([16000, 44100, 48000]))
        self.audio_chunk_ms = int(rng.choice([20, 40, 50, 100]))
        self.imu_rate = int(rng.choice([100, 200, 400]))
        self.fps = float(rng.choice([2.0, 4.0, 5.0]))
        self.skew_ns = int(rng.integers(-2, 3) * MS)
        self.frame_size = frame_size
        self.sensor_size = sensor_size

    def _clock(self, rng: np.random.Generator) -> int:
        """Offset from true time to this device's clock for one record."""
        return self.offset_ns + self.skew_ns + int(rng.normal(0, 0.3) * MS)

    def _live(self, ts_ns: int) -> bool:
        return self.end_ns is None or ts_ns < self.end_ns

    def stream(self, modality: str) -> Iterator[tuple[int, str, Record]]:
        """``(true_ts_ns, modality, record)`` of one modality, lazily, in time order."""
        if modality == "audio":
            return self._audio()
        if modality == "imu":
            return self._imu()
        return self._frames(modality)

    def _audio(self) -> Iterator[tuple[int, str, Record]]:
        rng = _rng(self.seed, "audio", self.name)
        n = self.audio_rate * self.audio_chunk_ms // 1000
        t, seq = self.start_ns, 0
        while self._live(t):
            seg = self.script.at(t)
            wave = render_audio(seg.activity, (t - seg.start_ns) / S, n, self.audio_rate,
                                seg.nuisance, rng)
            yield t, "audio", audio_record(self.name, t + self._clock(rng), seq, wave,
                                           self.audio_rate)
            t += n * S // self.audio_rate
            seq += 1

    def _imu(self) -> Iterator[tuple[int, str, Record]]:
        rng = _rng(self.seed, "imu", self.name)
        batch = max(1, self.imu_rate // 10)  # 100 ms batches
        period = S // self.imu_rate
        t, seq = self.start_ns, 0
        while self._live(t):
            seg = self.script.at(t)
            rows = render_imu(seg.activity, (t - seg.start_ns) / S, batch, self.imu_rate,
                              seg.nuisance, rng)
            clock = self._clock(rng)
            ts = [t + i * period + clock for i in range(batch)]
            yield t, "imu", imu_record(self.name, ts, seq, rows)
            t += batch * period
            seq += batch

    def _frames(self, modality: str) -> Iterator[tuple[int, str, Record]]:
        rng = _rng(self.seed, modality, self.name)
        period = round(S / self.fps)
        t, seq = self.start_ns, 0
        while self._live(t):
            seg = self.script.at(t)
            at_s = (t - seg.start_ns) / S
            if modality == "vision":
                img = render_frame(seg.activity, at_s, seg.nuisance, rng, *self.frame_size)
                rec = frame_record("vision", self.name, t + self._clock(rng), seq, img, "jpeg")
            elif modality == "depth":
                img = render_depth(seg.activity, at_s, seg.nuisance, rng, *self.sensor_size)
                rec = frame_record("depth", self.name, t + self._clock(rng), seq, img, "u16_mm")
            else:  # thermal as u16 centikelvin
                img = celsius_to_u16(render_thermal(seg.activity, at_s, seg.nuisance, rng,
                                                    *self.sensor_size))
                rec = frame_record("thermal", self.name, t + self._clock(rng), seq, img, "u16")
            yield t, modality, rec
            t += period
            seq += 1
