"""The load generator: a fleet of world devices, streamed in event-time order.

Each device follows an activity script from :mod:`streambind.world` (see
:mod:`streambind.sim.devices`) that shapes every modality it publishes: audio at 16, 44.1
or 48 kHz in 20-100 ms chunks (pcm_s16le), IMU at 100-400 Hz in 100 ms batches, camera
frames as JPEG, depth as u16_mm and thermal as u16 (centikelvin) at 2-5 fps.

Records are generated lazily: :func:`stream` merges the devices' per-modality generators
by event time (a heap holding one pending record per stream), so memory stays bounded,
the first record is ready at once and the duration may be unbounded (``duration_s`` of 0
or None). Field conditions, all optional: dropped records, per-record clock jitter, local
out-of-order delivery (a one-record holdback), a share of malformed records (one per
dead-letter reason in turn), a fixed clock offset per device, and backlog uploads (a
device offline for a while whose buffered records are then sent all at once).

Event time is synthetic (``start_ns`` + offsets), so tests can publish minutes of data in
seconds; ``realtime=True`` paces the sends to wall-clock time divided by ``rate_scale``.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from streambind.sim.devices import Device, Script, Segment
from streambind.sim.kafka_io import send_records
from streambind.sim.records import MALFORMED_KINDS, Record, malformed_record
from streambind.stream.chunks import MODALITIES
from streambind.units import NS_PER_S
from streambind.world.activities import ACTIVITY_NAMES

logger = logging.getLogger(__name__)

S = NS_PER_S  # short name for event-time arithmetic
MS = 1_000_000
ACTIVITIES = ACTIVITY_NAMES
_MAX_KEPT_SEGMENTS = 10_000


@dataclass(frozen=True)
class Backlog:
    """``device`` is offline for ``duration_s`` from ``start_s`` after the simulation's
    start; it keeps recording, and sends everything it buffered when it comes back."""

    device: str
    start_s: float
    duration_s: float


@dataclass
class SimStats:
    """What a simulation sent: records per modality, malformed, dropped, and the script.

    ``activities`` holds the most recent segments ``(device, start_ns, end_ns, activity)``
    (device clock; at most 10,000); ``segments`` counts all of them.
    """

    records: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    dropped: int = 0
    segments: int = 0
    activities: deque[tuple[str, int, int, str]] = field(
        default_factory=lambda: deque(maxlen=_MAX_KEPT_SEGMENTS))


def device_name(index: int) -> str:
    """The id of the simulation's ``index``-th device."""
    return f"dev-{index:03d}"


def script(device: str, start_ns: int, duration_s: float, seed: int) -> list[tuple[int, int, str]]:
    """Ground truth ``(start_ns, end_ns, activity)`` segments of one device (true time)."""
    segs = Script(device, start_ns, start_ns + round(duration_s * S), seed).segments()
    return [(s.start_ns, s.end_ns, s.activity) for s in segs]


class TruthWriter:
    """Writes one JSON line per activity segment, flushed at once (readers see it live)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def write(self, device: str, start_ns: int, end_ns: int, activity: str) -> None:
        """One segment, in the device's clock."""
        line = json.dumps({"device_id": device, "start_ns": start_ns, "end_ns": end_ns,
                           "activity": activity})
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def stream(
    devices: int, duration_s: float | None, *, modalities: Sequence[str] = MODALITIES,
    malformed_share: float = 0.0, drop_share: float = 0.01, reorder_share: float = 0.02,
    seed: int = 0, start_ns: int | None = None, topics: Mapping[str, str] | None = None,
    stats: SimStats | None = None, truth: TruthWriter | None = None,
    clock_offsets_s: Mapping[str, float] | None = None, backlogs: Sequence[Backlog] = (),
    frame_size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, int, str, Record]]:
    """Records as ``(send_ns, event_ts_ns, topic, record)`` in send order, lazily.

    ``event_ts_ns`` is the true time of the record's first sample; ``send_ns`` is when the
    device sends it (the same, except for backlog uploads). ``duration_s`` 0 or None runs
    forever. ``start_ns`` is the event-time origin (default: now); ``topics`` maps
    modalities to topic names (default ``sensors.<modality>``); ``clock_offsets_s`` shifts
    a device's clock (its records and its ground truth). ``truth`` receives every segment.
    """
    stats = stats if stats is not None else SimStats()
    start = start_ns if start_ns is not None else time.time_ns()
    end = start + round(duration_s * S) if duration_s else None
    rng = np.random.default_rng(seed)
    topic_of = {m: (topics or {}).get(m, f"sensors.{m}") for m in modalities}
    offsets = {k: round(v * S) for k, v in (clock_offsets_s or {}).items()}

    def on_segment(device: str, offset_ns: int):
        def record(seg: Segment) -> None:
            row = (device, seg.start_ns + offset_ns, seg.end_ns + offset_ns, seg.activity)
            stats.segments += 1
            stats.activities.append(row)
            if truth is not None:
                truth.write(*row)
        return record

    heap: list[tuple[int, int, str, Record]] = []
    streams: list[Iterator[tuple[int, str, Record]]] = []
    extra = {"frame_size": frame_size} if frame_size else {}
    for d in range(devices):
        name = device_name(d)
        off = offsets.get(name, 0)
        dev = Device(name, start, end, seed, offset_ns=off, on_segment=on_segment(name, off),
                     **extra)
        for m in modalities:
            streams.append(dev.stream(m))
    for i, it in enumerate(streams):  # one pending record per stream
        first = next(it, None)
        if first is not None:
            heap.append((first[0], i, first[1], first[2]))
    heapq.heapify(heap)

    def merged() -> Iterator[tuple[int, str, Record]]:
        while heap:
            ts, i, modality, rec = heap[0]
            nxt = next(streams[i], None)
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt[0], i, nxt[1], nxt[2]))
            yield ts, modality, rec

    outages = {b.device: (start + round(b.start_s * S), start + round((b.start_s + b.duration_s)
                                                                         * S)) for b in backlogs}
    buffered: dict[str, list[tuple[int, str, Record]]] = {k: [] for k in outages}

    def conditioned() -> Iterator[tuple[int, int, str, Record]]:
        """Drops, malformed records and backlogs; ``(send_ns, ts, topic, record)``."""
        good = tried = 0
        for ts, modality, rec in merged():
            for dev, (_, hi) in outages.items():  # devices coming back online upload first
                if ts >= hi and buffered[dev]:
                    for bts, btopic, brec in buffered[dev]:
                        yield hi, bts, btopic, brec
                    buffered[dev].clear()
            if rng.random() < drop_share:
                stats.dropped += 1
                continue
            stats.records[modality] = stats.records.get(modality, 0) + 1
            good += 1
            device = rec.key.decode()
            window = outages.get(device)
            if window is not None and window[0] <= ts < window[1]:
                buffered[device].append((ts, topic_of[modality], rec))
            else:
                yield ts, ts, topic_of[modality], rec
            while malformed_share > 0 and tried < round(malformed_share * good):
                kind = MALFORMED_KINDS[tried % len(MALFORMED_KINDS)]
                bad_modality, bad = malformed_record(kind, device_name(tried % max(devices, 1)),
                                                     ts, 10**9 + tried)
                tried += 1
                if bad_modality in topic_of:  # kinds of unpublished modalities are skipped
                    stats.malformed += 1
                    yield ts, ts, topic_of[bad_modality], bad
        for dev, (_, hi) in outages.items():  # the simulation ended during an outage
            for bts, btopic, brec in buffered[dev]:
                yield max(hi, bts), bts, btopic, brec

    held: tuple[int, int, str, Record] | None = None
    for item in conditioned():  # local out-of-order delivery: hold one record back
        if held is None:
            held = item
        elif rng.random() < reorder_share:
            yield item
        else:
            yield held
            held = item
    if held is not None:
        yield held


def generate(devices: int, duration_s: float, **kwargs: Any) -> list[tuple[int, str, Record]]:
    """All records of a bounded simulation as ``(event_ts_ns, topic, record)`` in send order
    (see :func:`stream` for the options). For tests and benchmarks; use :func:`stream` or
    :func:`simulate` for long runs."""
    if not duration_s or duration_s <= 0:
        raise ValueError("generate() needs a bounded duration; use stream() for unbounded runs")
    return [(ts, topic, rec) for _, ts, topic, rec in stream(devices, duration_s, **kwargs)]


def simulate(
    bootstrap: str, devices: int, duration_s: float | None, *, realtime: bool = False,
    rate_scale: float = 1.0, stop: threading.Event | None = None, **kwargs: Any,
) -> SimStats:
    """Stream a simulation to Kafka (see :func:`stream` for the options).

    ``realtime`` paces the sends so that event time advances ``rate_scale`` times as fast
    as wall-clock time; otherwise records go out as fast as the broker takes them.
    ``stop`` (set from a signal handler, say) ends the run after the current record; what
    was sent is flushed either way.
    """
    stats = kwargs.pop("stats", None) or SimStats()
    items = stream(devices, duration_s, stats=stats, **kwargs)
    wall0: float | None = None
    t_first = 0

    def paced() -> Iterator[tuple[str, Record]]:
        nonlocal wall0, t_first
        for send_ns, _, topic, rec in items:
            if stop is not None and stop.is_set():
                return
            if realtime:
                if wall0 is None:
                    wall0, t_first = time.monotonic(), send_ns
                delay_s = (send_ns - t_first) / S / rate_scale - (time.monotonic() - wall0)
                if delay_s > 0 and _sleep(delay_s, stop):
                    return
            yield topic, rec

    send_records(bootstrap, paced())
    return stats


def _sleep(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep; True when ``stop`` was set meanwhile."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)
