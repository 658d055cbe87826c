"""The decoded, validated unit the windower consumes: one sensor record row or batch.

A :class:`SensorChunk` is what :mod:`streambind.stream.records` produces from a Kafka
record after decoding and validation. Audio chunks carry float32 mono samples, IMU chunks
an ``(N, 6)`` float32 array with per-row event times, frame chunks the decoded image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES: tuple[str, ...] = ("vision", "audio", "depth", "thermal", "imu")
FRAME_MODALITIES: frozenset[str] = frozenset({"vision", "depth", "thermal"})


@dataclass(frozen=True, slots=True)
class SensorChunk:
    """A decoded piece of one device's stream of one modality.

    ``ts_ns`` is the event time of the first sample (or of the frame); ``end_ns`` is the
    exclusive end of the time span the chunk covers. ``partition`` and ``offset`` name the
    Kafka record it came from, so offsets can be tracked per window.
    """

    modality: str
    device_id: str
    ts_ns: int
    end_ns: int
    seq: int
    data: np.ndarray
    sample_rate: float | None
    sample_ts_ns: np.ndarray | None
    partition: int
    offset: int
