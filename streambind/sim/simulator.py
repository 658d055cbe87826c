"""The load generator: a fleet of synthetic devices with scripted ground-truth activities.

Each device follows a script of activities (``idle``, ``walking``, ``talking``, ``music``,
``door``) that shape its signals: IMU acceleration and gyro patterns, audio tones and noise,
frame brightness, depth distance and a thermal hot spot. Audio comes at 16, 44.1 or
48 kHz in 20-100 ms chunks (pcm_s16le), IMU at 100-400 Hz in batches, camera frames as
JPEG, depth as u16_mm and thermal as u16 at a few fps. Realism: per-device clock jitter,
local out-of-order delivery, dropped chunks and a share of malformed records.

Event time is synthetic (``start_ns`` + offsets), so tests can publish minutes of data in
seconds; ``realtime=True`` paces the sends to wall-clock time divided by ``rate_scale``.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from streambind.sim.kafka_io import send_records
from streambind.sim.records import (
    MALFORMED_KINDS,
    Record,
    audio_record,
    frame_record,
    imu_record,
    malformed_record,
)
from streambind.stream.chunks import MODALITIES

logger = logging.getLogger(__name__)

S = 1_000_000_000
MS = 1_000_000
ACTIVITIES = ("idle", "walking", "talking", "music", "door")
_SEGMENT_S = (3.0, 8.0)


@dataclass
class SimStats:
    """What a simulation sent: records per modality, malformed, dropped, and the script."""

    records: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    dropped: int = 0
    activities: list[tuple[str, int, int, str]] = field(default_factory=list)


def script(device: str, start_ns: int, duration_s: float, seed: int) -> list[tuple[int, int, str]]:
    """Ground truth ``(start_ns, end_ns, activity)`` segments of one device."""
    rng = np.random.default_rng(zlib.crc32(f"{seed}:{device}".encode()))
    out, t = [], start_ns
    end = start_ns + round(duration_s * S)
    while t < end:
        seg = min(end, t + round(rng.uniform(*_SEGMENT_S) * S))
        out.append((t, seg, str(rng.choice(ACTIVITIES))))
        t = seg
    return out


def _activity_at(segments: list[tuple[int, int, str]], ts_ns: int) -> str:
    for start, end, name in segments:
        if start <= ts_ns < end:
            return name
    return "idle"


class _Device:
    def __init__(self, name: str, start_ns: int, duration_s: float, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(zlib.crc32(f"{seed}/{name}".encode()))
        self.start_ns = start_ns
        self.end_ns = start_ns + round(duration_s * S)
        self.segments = script(name, start_ns, duration_s, seed)
        self.audio_rate = int(self.rng.choice([16000, 44100, 48000]))
        self.audio_chunk_ms = int(self.rng.choice([20, 40, 50, 100]))
        self.imu_rate = int(self.rng.choice([100, 200, 400]))
        self.fps = float(self.rng.choice([2.0, 4.0, 5.0]))
        self.skew_ns = int(self.rng.integers(-2, 3) * MS)  # device clock offset

    def jitter(self) -> int:
        return self.skew_ns + int(self.rng.normal(0, 0.3) * MS)

    def audio(self) -> Iterator[tuple[int, Record]]:
        n = self.audio_rate * self.audio_chunk_ms // 1000
        t, seq = self.start_ns, 0
        phase = 0.0
        while t < self.end_ns:
            act = _activity_at(self.segments, t)
            freq = {"talking": 220.0, "music": 440.0, "door": 90.0}.get(act, 0.0)
            k = np.arange(n) / self.audio_rate
            wave = 0.3 * np.sin(2 * np.pi * freq * k + phase) if freq else np.zeros(n)
            phase += 2 * np.pi * freq * n / self.audio_rate
            wave = wave + 0.01 * self.rng.standard_normal(n)
            yield t, audio_record(self.name, t + self.jitter(), seq, wave.astype(np.float32),
                                  self.audio_rate)
            t += n * S // self.audio_rate
            seq += 1

    def imu(self) -> Iterator[tuple[int, Record]]:
        batch = max(1, self.imu_rate // 10)  # 100 ms batches
        period = S // self.imu_rate
        t, seq = self.start_ns, 0
        while t < self.end_ns:
            ts = [t + i * period for i in range(batch)]
            act = _activity_at(self.segments, t)
            k = np.array(ts, dtype=np.float64) / S
            vals = 0.05 * self.rng.standard_normal((batch, 6))
            vals[:, 2] += 9.81
            if act == "walking":
                vals[:, 0] += 2.0 * np.sin(2 * np.pi * 1.8 * k)
                vals[:, 4] += 0.5 * np.sin(2 * np.pi * 0.9 * k)
            j = self.jitter()
            yield t, imu_record(self.name, [x + j for x in ts], seq, vals.astype(np.float32))
            t += batch * period
            seq += batch

    def frames(self, modality: str) -> Iterator[tuple[int, Record]]:
        period = round(S / self.fps)
        t, seq = self.start_ns, 0
        while t < self.end_ns:
            act = _activity_at(self.segments, t)
            level = ACTIVITIES.index(act) / len(ACTIVITIES)
            if modality == "vision":
                img = np.full((120, 160, 3), int(40 + 180 * level), np.uint8)
                img[:, :, 1] = self.rng.integers(0, 255, (120, 160), dtype=np.uint8)
                rec = frame_record("vision", self.name, t + self.jitter(), seq, img, "jpeg")
            elif modality == "depth":
                img = np.full((60, 80), int(800 + 3000 * level), np.uint16)
                rec = frame_record("depth", self.name, t + self.jitter(), seq, img, "u16_mm")
            else:
                img = self.rng.integers(7000, 7100, (60, 80)).astype(np.uint16)
                if act in ("walking", "talking"):
                    img[20:40, 30:50] += 800
                rec = frame_record("thermal", self.name, t + self.jitter(), seq, img, "u16")
            yield t, rec
            t += period
            seq += 1


def generate(
    devices: int, duration_s: float, *, modalities: Sequence[str] = MODALITIES,
    malformed_share: float = 0.0, drop_share: float = 0.01,
    reorder_share: float = 0.02, seed: int = 0, start_ns: int | None = None,
    topics: dict[str, str] | None = None, stats: SimStats | None = None,
) -> list[tuple[int, str, Record]]:
    """All records of a simulation as ``(event_ts_ns, topic, record)`` in send order.

    ``start_ns`` is the event-time origin (default: now); ``topics`` maps modalities to
    topic names (default ``sensors.<modality>``).
    """
    stats = stats if stats is not None else SimStats()
    start = start_ns if start_ns is not None else time.time_ns()
    rng = np.random.default_rng(seed)
    topic_of = {m: (topics or {}).get(m, f"sensors.{m}") for m in modalities}
    items: list[tuple[int, str, Record]] = []
    for d in range(devices):
        dev = _Device(f"dev-{d:03d}", start, duration_s, seed)
        stats.activities += [(dev.name, a, b, n) for a, b, n in dev.segments]
        gens = {"audio": dev.audio, "imu": dev.imu}
        for m in modalities:
            it = gens[m]() if m in gens else dev.frames(m)
            for ts, rec in it:
                if rng.random() < drop_share:
                    stats.dropped += 1
                    continue
                items.append((ts, topic_of[m], rec))
                stats.records[m] = stats.records.get(m, 0) + 1
    items.sort(key=lambda x: x[0])
    for i in range(len(items) - 1):  # local out-of-order delivery
        if rng.random() < reorder_share:
            items[i], items[i + 1] = items[i + 1], items[i]
    if malformed_share > 0:
        n_bad = round(malformed_share * len(items))
        for j in range(n_bad):
            kind = MALFORMED_KINDS[j % len(MALFORMED_KINDS)]
            pos = int(rng.integers(0, len(items) + 1))
            ts = items[min(pos, len(items) - 1)][0] if items else start
            modality, rec = malformed_record(kind, f"dev-{j % max(devices, 1):03d}", ts, 10**9 + j)
            if modality in topic_of:
                items.insert(pos, (ts, topic_of[modality], rec))
                stats.malformed += 1
    return items


def simulate(
    bootstrap: str, devices: int, duration_s: float, *, realtime: bool = False,
    rate_scale: float = 1.0, **kwargs: object,
) -> SimStats:
    """Generate and publish a simulation (see :func:`generate` for the options).

    ``realtime`` paces the sends so that event time advances ``rate_scale`` times as fast
    as wall-clock time; otherwise records go out as fast as the broker takes them.
    """
    stats = SimStats()
    items = generate(devices, duration_s, stats=stats, **kwargs)  # type: ignore[arg-type]
    if not realtime or not items:
        send_records(bootstrap, [(t, r) for _, t, r in items])
        return stats
    t_first, wall0 = items[0][0], time.monotonic()

    def paced() -> Iterator[tuple[str, Record]]:
        for ts, topic, rec in items:
            delay_s = (ts - t_first) / S / rate_scale - (time.monotonic() - wall0)
            if delay_s > 0:
                time.sleep(delay_s)
            yield topic, rec

    send_records(bootstrap, paced())
    return stats
