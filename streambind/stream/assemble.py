"""Turn a :class:`~streambind.stream.windows.ClosedWindow` into the featurizers' raw input.

Pure functions, one per modality, dispatched by :func:`assemble`:

* audio -> :class:`AudioInput`: float32 mono samples exactly covering ``[start, end)``:
  ``round(size_s * rate)`` samples, sample ``i`` at ``start + i / rate``. Each chunk is placed
  by its ``ts_ns`` (rounded to the nearest sample slot); where chunks overlap, the earlier
  chunk wins; uncovered slots are zeros and counted in ``filled_samples``.
* imu -> :class:`ImuInput`: an ``(N, 6)`` float32 grid at the device rate, ``N =
  round(size_s * rate)``, row ``i`` at ``start + i / rate``, linearly interpolated from the
  samples' own timestamps (samples just outside the window, from chunks that straddle its
  edges, anchor the ends; beyond the first/last sample the edge value is held). Grid rows
  with no real sample within 0.75 of a period are counted in ``filled_samples``.
* vision -> :class:`FramesInput`: the window's first and last frame (one frame: used twice).
* depth, thermal -> :class:`FrameInput`: the frame nearest the window's middle (ties: the
  earlier), with its wire encoding (inferred from the dtype for an already decoded array).

Frames arrive encoded and are decoded here, only the selected ones; a selected frame that
does not decode is replaced by the nearest candidate that does, and reported in
``failures`` so that the caller dead-letters its record.

Mixed sample rates in one window (a device changed rate mid-window) raise
:class:`MixedSampleRateError` unless ``resample_to_hz`` is given; then every chunk is put on
that rate by linear interpolation of its samples (the featurizers resample again anyway:
audio to 16 kHz, imu to 400 Hz). ``resample_to_hz`` is also the way to force one rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streambind.errors import FeatureError, StreambindError
from streambind.features.audio import to_mono
from streambind.stream.chunks import SensorChunk
from streambind.stream.windows import ClosedWindow
from streambind.units import NS_PER_S

logger = logging.getLogger(__name__)

IMU_CHANNELS = 6
_COVERED_PERIODS = 0.75  # an imu grid row is real when a sample lies this close (in periods)
_DEPTH_ENCODINGS = {np.dtype(np.uint16): "u16_mm", np.dtype(np.float32): "f32_m"}
_THERMAL_ENCODINGS = {
    np.dtype(np.uint8): "u8",
    np.dtype(np.uint16): "u16",
    np.dtype(np.float32): "f32_c",
}


class AssemblyError(StreambindError, ValueError):
    """A closed window cannot be assembled (no data, wrong shapes, unknown modality).

    ``failures``: frames that did not decode on the way (their records are dead letters).
    """

    failures: tuple[FrameFailure, ...] = ()


class MixedSampleRateError(AssemblyError):
    """A window's chunks have different sample rates and no target rate was given."""


@dataclass(frozen=True, slots=True)
class SampledInput:
    """Samples on a regular grid covering exactly ``[start_ns, end_ns)`` at ``sample_rate_hz``.

    ``filled_samples`` counts the grid slots that stand in for missing data.
    """

    samples: np.ndarray
    sample_rate_hz: float
    start_ns: int
    end_ns: int
    filled_samples: int

    @property
    def gap_filled(self) -> bool:
        """True when some samples stand in for missing data rather than measured ones."""
        return self.filled_samples > 0


@dataclass(frozen=True, slots=True)
class AudioInput(SampledInput):
    """Mono float32 samples; gaps are zeros."""


@dataclass(frozen=True, slots=True)
class ImuInput(SampledInput):
    """An ``(N, 6)`` float32 grid; gap rows are interpolated between measured ones."""


@dataclass(frozen=True, slots=True)
class FrameFailure:
    """A selected frame that did not decode: its chunk (and record) and the error."""

    chunk: SensorChunk
    error: FeatureError


@dataclass(frozen=True, slots=True)
class FramesInput:
    """Vision: the frames the model sees (first and last of the window) and their times.

    ``failures``: selected frames that did not decode (the nearest good candidate stands in).
    """

    frames: tuple[np.ndarray, ...]
    ts_ns: tuple[int, ...]
    failures: tuple[FrameFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class FrameInput:
    """Depth or thermal: one frame, its event time and its wire encoding (``failures``: as
    :class:`FramesInput`)."""

    frame: np.ndarray
    ts_ns: int
    encoding: str
    failures: tuple[FrameFailure, ...] = ()


RawInput = AudioInput | ImuInput | FramesInput | FrameInput


def assemble(window: ClosedWindow, *, resample_to_hz: float | None = None) -> RawInput:
    """The featurizer input of ``window``, by modality (see the module docstring)."""
    modality = window.modality
    if modality == "audio":
        return assemble_audio(window, resample_to_hz=resample_to_hz)
    if modality == "imu":
        return assemble_imu(window, resample_to_hz=resample_to_hz)
    if modality == "vision":
        return assemble_vision(window)
    if modality in ("depth", "thermal"):
        return assemble_single_frame(window)
    from streambind.stream import custom

    if custom.bound_config(modality) is not None:  # its tower's featurizer takes the window
        return custom.BoundInput(window)
    raise AssemblyError(f"no assembly for modality {modality!r}")


def sample_count(size_ns: int, rate_hz: float) -> int:
    """Samples in ``size_ns`` at ``rate_hz``: ``round(size_ns * rate_hz / 1e9)``."""
    return round(size_ns * rate_hz / NS_PER_S)


def window_rate(chunks: tuple[SensorChunk, ...], resample_to_hz: float | None) -> float:
    """The one sample rate of ``chunks``, or ``resample_to_hz`` when given."""
    if resample_to_hz is not None:
        if not resample_to_hz > 0:
            raise AssemblyError(f"resample_to_hz must be > 0, got {resample_to_hz}")
        return float(resample_to_hz)
    rates = {c.sample_rate for c in chunks}
    if None in rates:
        raise AssemblyError("a chunk has no sample rate")
    if len(rates) != 1:
        raise MixedSampleRateError(f"window mixes sample rates {sorted(rates)}")
    (rate,) = rates
    if not rate or rate <= 0:
        raise AssemblyError(f"bad sample rate {rate}")
    return float(rate)


def _require_chunks(window: ClosedWindow) -> tuple[SensorChunk, ...]:
    if not window.chunks:
        raise AssemblyError(f"window {window.key} has no data")
    return window.chunks


def _resampled(values: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Linear interpolation of evenly spaced ``values`` (first axis) from one rate to another."""
    if from_hz == to_hz or len(values) == 0:
        return values
    n = max(1, round(len(values) * to_hz / from_hz))
    src = np.arange(len(values)) / from_hz
    dst = np.arange(n) / to_hz
    if values.ndim == 1:
        return np.interp(dst, src, values).astype(np.float32)
    cols = [np.interp(dst, src, values[:, c]) for c in range(values.shape[1])]
    return np.stack(cols, axis=1).astype(np.float32)


# int16 PCM to [-1, 1): what decode_pcm does (value / 32768, exact in float32).
PCM16_SCALE = np.float32(1.0 / 32768.0)


def _audio_samples(c: SensorChunk) -> np.ndarray:
    """A chunk's samples as float32 in [-1, 1] (int16 PCM scaled by ``to_mono``, as
    decoding scales it)."""
    data = np.asarray(c.data)
    return to_mono(data) if data.dtype.kind == "i" else np.asarray(data, dtype=np.float32)


def assemble_audio(window: ClosedWindow, *, resample_to_hz: float | None = None) -> AudioInput:
    """Exactly ``round(size_s * rate)`` float32 samples of ``[start, end)``, gaps zero-filled."""
    chunks = _require_chunks(window)
    rate = window_rate(chunks, resample_to_hz)
    start, end = window.start_ns, window.end_ns
    n = sample_count(end - start, rate)
    out = np.zeros(n, dtype=np.float32)
    filled = np.zeros(n, dtype=bool)
    # All int16 PCM at the window's rate (the common case): copied as integers (exact in
    # float32) and scaled once for the whole window instead of once per chunk.
    pcm = all(np.asarray(c.data).dtype == np.int16 and c.sample_rate in (None, rate)
              for c in chunks)
    written_hi = 0  # no sample at or after this index is filled yet
    for c in chunks:
        data = np.asarray(c.data) if pcm else _audio_samples(c)
        if data.ndim != 1:
            raise AssemblyError(f"audio chunk {c.seq} of {c.device_id}: expected mono samples")
        if c.sample_rate is not None and c.sample_rate != rate:
            data = _resampled(data, float(c.sample_rate), rate)
        first = round((c.ts_ns - start) * rate / NS_PER_S)
        lo, hi = max(first, 0), min(first + len(data), n)
        if hi <= lo:
            continue
        if lo >= written_hi:  # the common case, chunks in order: nothing to keep, one copy
            out[lo:hi] = data[lo - first : hi - first]
        else:  # overlapping an earlier chunk: the earlier samples stay
            free = ~filled[lo:hi]
            out[lo:hi][free] = data[lo - first : hi - first][free]
        filled[lo:hi] = True
        written_hi = max(written_hi, hi)
    if pcm:
        out *= PCM16_SCALE
    missing = int(n - np.count_nonzero(filled))
    if missing:
        logger.debug("%s: %d of %d audio samples zero-filled", window.key, missing, n)
    return AudioInput(out, rate, start, end, missing)


def _imu_rows(c: SensorChunk, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows (float64 (N, 6)) and their event times (int64 ns) of one imu chunk."""
    data = np.asarray(c.data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != IMU_CHANNELS:
        raise AssemblyError(f"imu chunk {c.seq} of {c.device_id}: expected (N, 6), got "
                            f"{data.shape}")
    if c.sample_ts_ns is not None:
        times = np.asarray(c.sample_ts_ns, dtype=np.int64)
        if times.shape != (len(data),):
            raise AssemblyError(f"imu chunk {c.seq}: {len(times)} times for {len(data)} rows")
        return data, times
    own_rate = float(c.sample_rate) if c.sample_rate else rate
    steps = np.rint(np.arange(len(data)) * (NS_PER_S / own_rate)).astype(np.int64)
    return data, c.ts_ns + steps


def assemble_imu(window: ClosedWindow, *, resample_to_hz: float | None = None) -> ImuInput:
    """``(round(size_s * rate), 6)`` float32 rows on the window's grid, gaps interpolated."""
    chunks = _require_chunks(window)
    rate = window_rate(chunks, resample_to_hz)
    start, end = window.start_ns, window.end_ns
    parts = [_imu_rows(c, rate) for c in chunks]
    values = np.concatenate([p[0] for p in parts])
    times = np.concatenate([p[1] for p in parts])
    if len(times) == 0:
        raise AssemblyError(f"window {window.key} has no imu samples")
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate(([True], np.diff(times) > 0))  # equal times: the first row wins
    rel_s = (times[keep] - start) / NS_PER_S
    values = values[keep]
    n = sample_count(end - start, rate)
    grid_s = np.arange(n) / rate
    out = np.stack([np.interp(grid_s, rel_s, values[:, c]) for c in range(IMU_CHANNELS)], axis=1)
    idx = np.searchsorted(rel_s, grid_s)
    prev_d = np.where(idx > 0, grid_s - rel_s[np.maximum(idx - 1, 0)], np.inf)
    next_d = np.where(idx < len(rel_s), rel_s[np.minimum(idx, len(rel_s) - 1)] - grid_s, np.inf)
    real = np.minimum(prev_d, next_d) <= _COVERED_PERIODS / rate
    missing = int(n - np.count_nonzero(real))
    if missing:
        logger.debug("%s: %d of %d imu rows interpolated", window.key, missing, n)
    return ImuInput(out.astype(np.float32), rate, start, end, missing)


def _frames_in_window(window: ClosedWindow) -> list[SensorChunk]:
    frames = [c for c in _require_chunks(window) if window.start_ns <= c.ts_ns < window.end_ns]
    if not frames:
        raise AssemblyError(f"window {window.key} has no frame inside it")
    return frames  # chunks are sorted by time


class _Decoder:
    """Decodes a window's frames on demand, each at most once, noting the failures."""

    def __init__(self) -> None:
        self.failures: list[FrameFailure] = []
        self._done: dict[int, np.ndarray | None] = {}

    def first_good(self, candidates: list[SensorChunk]) -> tuple[SensorChunk, np.ndarray] | None:
        """The first candidate (in the given order) that decodes."""
        for chunk in candidates:
            key = id(chunk)
            if key not in self._done:
                try:
                    self._done[key] = chunk.frame()
                except FeatureError as exc:
                    logger.info("frame %s seq %d (offset %d) does not decode: %s",
                                chunk.device_id, chunk.seq, chunk.offset, exc)
                    self.failures.append(FrameFailure(chunk, exc))
                    self._done[key] = None
            frame = self._done[key]
            if frame is not None:
                return chunk, frame
        return None

    def no_frame(self, window: ClosedWindow) -> AssemblyError:
        err = AssemblyError(f"window {window.key}: none of its {len(self._done)} candidate "
                            "frames decodes")
        err.failures = tuple(self.failures)
        return err


def assemble_vision(window: ClosedWindow) -> FramesInput:
    """The window's first and last frame (a single frame is used twice), in time order.

    Frames are decoded here; one that does not decode is replaced by the nearest candidate
    that does (the next one for the first frame, the previous one for the last).
    """
    frames = _frames_in_window(window)
    decoder = _Decoder()
    first = decoder.first_good(frames)
    if first is None:
        raise decoder.no_frame(window)
    last = decoder.first_good(frames[::-1]) or first  # (first is a candidate: never None)
    return FramesInput((first[1], last[1]), (first[0].ts_ns, last[0].ts_ns),
                       tuple(decoder.failures))


def assemble_single_frame(window: ClosedWindow) -> FrameInput:
    """The frame nearest the window's middle (ties go to the earlier frame); when it does
    not decode, the next nearest that does."""
    frames = _frames_in_window(window)
    middle = window.start_ns + (window.end_ns - window.start_ns) // 2
    decoder = _Decoder()
    best = decoder.first_good(sorted(frames, key=lambda c: (abs(c.ts_ns - middle), c.ts_ns)))
    if best is None:
        raise decoder.no_frame(window)
    chunk, frame = best
    encoding = chunk.encoding or frame_encoding(window.modality, frame)
    return FrameInput(frame, chunk.ts_ns, encoding, tuple(decoder.failures))


def frame_encoding(modality: str, frame: np.ndarray) -> str:
    """The wire encoding a decoded depth/thermal frame corresponds to, from its dtype."""
    table = _DEPTH_ENCODINGS if modality == "depth" else _THERMAL_ENCODINGS
    encoding = table.get(np.asarray(frame).dtype)
    if modality not in ("depth", "thermal") or encoding is None:
        raise AssemblyError(f"{modality} frame of dtype {np.asarray(frame).dtype} has no encoding")
    return encoding
