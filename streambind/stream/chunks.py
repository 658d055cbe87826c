"""The decoded, validated unit the windower consumes: one sensor record row or batch.

A :class:`SensorChunk` is what :mod:`streambind.stream.records` produces from a Kafka
record after decoding and validation. Audio chunks carry mono samples: int16 PCM as sent
for mono ``pcm_s16le`` (a view of the record; assembly scales it to [-1, 1)), float32 in
[-1, 1] otherwise. IMU chunks carry an ``(N, 6)`` float32 array with per-row event times.
Frame chunks keep the frame's *encoded* bytes (``encoding`` set; a zero-copy slice of the
record where possible) and are decoded only when a window selects them
(:meth:`SensorChunk.frame`): most frames are never decoded, and an encoded frame is a
fraction of the decoded one. ``source`` references the
Kafka record a chunk came from, so a frame that fails to decode later, or a window that
fails, can still be dead-lettered with the original key, value and headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODALITIES: tuple[str, ...] = ("vision", "audio", "depth", "thermal", "imu")
FRAME_MODALITIES: frozenset[str] = frozenset({"vision", "depth", "thermal"})

# Payload types that know their size in bytes (a bytes-like payload: its length).
_SIZED = (np.ndarray, memoryview)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """The Kafka record a chunk was decoded from (what a dead letter carries)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] | None


@dataclass(frozen=True, slots=True)
class SensorChunk:
    """A decoded piece of one device's stream of one modality.

    ``ts_ns`` is the event time of the first sample (or of the frame); ``end_ns`` is the
    exclusive end of the time span the chunk covers. ``partition`` and ``offset`` name the
    Kafka record it came from, so offsets can be tracked per window. Frames: ``data`` is
    the decoded array when ``encoding`` is None, else the encoded payload (bytes-like) of
    ``width`` x ``height``. ``source_bytes`` is this chunk's share of the source record's
    bytes that ``data`` does not already hold (see :attr:`nbytes`).
    """

    modality: str
    device_id: str
    ts_ns: int
    end_ns: int
    seq: int
    data: np.ndarray | bytes | memoryview
    sample_rate: float | None
    sample_ts_ns: np.ndarray | None
    partition: int
    offset: int
    encoding: str | None = None
    width: int = 0
    height: int = 0
    source: SourceRecord | None = None
    source_bytes: int = 0

    @property
    def encoded(self) -> bool:
        """True for a frame still in its wire encoding."""
        return self.encoding is not None

    @property
    def nbytes(self) -> int:
        """Bytes this chunk keeps alive: its data, sample times and share of the record."""
        data = self.data
        size = data.nbytes if isinstance(data, _SIZED) else len(data)
        if self.sample_ts_ns is not None:
            size += self.sample_ts_ns.nbytes
        return size + self.source_bytes

    def frame(self) -> np.ndarray:
        """The decoded frame (decoded now for an encoded one; see features.decode_frame).

        Raises :class:`~streambind.errors.FeatureError` with the dead-letter reason when the
        payload does not decode, or (thermal, ``f32_c``) holds NaN or infinity.
        """
        if self.encoding is None:
            return np.asarray(self.data)
        from streambind.errors import FeatureError
        from streambind.features import decode_frame

        frame = decode_frame(self.encoding, self.width, self.height, self.data)
        if self.modality == "thermal" and frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise FeatureError("thermal frame holds NaN or infinity", "non_finite")
        return frame
