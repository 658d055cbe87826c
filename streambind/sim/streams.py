"""Clean, deterministic sensor streams (no jitter, no drops) for tests and benchmarks.

Every modality at a fixed rate from an aligned origin, so the expected windows are known
exactly. The realistic load generator is :mod:`streambind.sim.simulator`.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from streambind.sim.records import Record, audio_record, frame_record, imu_record
from streambind.units import NS_PER_S

S = NS_PER_S  # short name for event-time arithmetic
MS = 1_000_000


def aligned_origin_ns(ago_s: int = 600, align_s: int = 10) -> int:
    """An event-time origin ``ago_s`` seconds ago, aligned down to ``align_s``."""
    return (time.time_ns() - ago_s * S) // (align_s * S) * (align_s * S)


def device_stream(device: str, t0: int, seconds: dict[str, int]) -> list[tuple[str, Record]]:
    """(modality, record) pairs covering [t0, t0 + seconds[modality]), in event-time order."""
    return [(m, r) for _, m, r in sorted(timed_stream(device, t0, seconds), key=lambda x: x[0])]


def interleave(*streams: list[tuple[int, str, Record]]) -> list[tuple[str, Record]]:
    """Merge timed streams of several devices by event time (as a real fleet produces)."""
    merged = sorted((x for s in streams for x in s), key=lambda x: x[0])
    return [(m, r) for _, m, r in merged]


def timed_stream(device: str, t0: int, seconds: dict[str, int]) -> list[tuple[int, str, Record]]:
    """(ts_ns, modality, record) triples covering [t0, t0 + seconds[modality])."""
    rng = np.random.default_rng(zlib.crc32(device.encode()))
    out: list[tuple[int, str, Record]] = []
    if "audio" in seconds:
        rate, chunk = 16000, 1600  # 100 ms chunks
        for i in range(seconds["audio"] * 10):
            samples = 0.2 * np.sin(np.arange(chunk) * 0.05 + i).astype(np.float32)
            ts0 = t0 + i * 100 * MS
            out.append((ts0, "audio", audio_record(device, ts0, i, samples, rate)))
    if "imu" in seconds:
        rate, batch = 100, 50  # 0.5 s batches
        for b in range(seconds["imu"] * rate // batch):
            ts = [t0 + (b * batch + j) * 10 * MS for j in range(batch)]
            vals = rng.standard_normal((batch, 6)).astype(np.float32)
            out.append((ts[0], "imu", imu_record(device, ts, b * batch, vals)))
    frames = {
        "vision": (lambda: rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "jpeg"),
        "depth": (lambda: rng.integers(500, 4000, (32, 40), dtype=np.uint16), "u16_mm"),
        "thermal": (lambda: rng.integers(0, 2**14, (24, 32), dtype=np.uint16), "u16"),
    }
    for modality, (make, encoding) in frames.items():
        if modality in seconds:
            for i in range(seconds[modality] * 4):  # 4 fps
                ts0 = t0 + i * 250 * MS
                rec = frame_record(modality, device, ts0, i, make(), encoding)
                out.append((ts0, modality, rec))
    return out
