"""Window assembly: exact audio sample counts, imu grids, frame selection, rate errors."""

from __future__ import annotations

import numpy as np
import pytest

from streambind.stream.assemble import (
    AssemblyError,
    AudioInput,
    FrameInput,
    FramesInput,
    ImuInput,
    MixedSampleRateError,
    assemble,
    frame_encoding,
    sample_count,
)
from streambind.stream.chunks import SensorChunk
from streambind.stream.windows import NS_PER_S, ClosedWindow, WindowKey

MS = 1_000_000


def window(modality, chunks, start_ms=0, size_ms=2000):
    key = WindowKey("d1", modality, start_ms * MS, (start_ms + size_ms) * MS)
    return ClosedWindow(key=key, partition=0, chunks=tuple(sorted(chunks, key=lambda c: c.ts_ns)),
                        coverage=1.0, gaps_ns=(), gap_filled=False, outcome="ok",
                        closed_by="watermark")


def audio(ts_ms, n, rate, value=None, seq=0):
    data = (np.arange(n, dtype=np.float32) if value is None
            else np.full(n, value, dtype=np.float32))
    end = ts_ms * MS + round(n * NS_PER_S / rate)
    return SensorChunk("audio", "d1", ts_ms * MS, end, seq, data, rate, None, 0, seq)


def audio_stream(rate, chunk_ms, start_ms=-300, stop_ms=2300):
    per = round(rate * chunk_ms / 1000)
    return [audio(ts, per, rate, value=ts, seq=i)
            for i, ts in enumerate(range(start_ms, stop_ms, chunk_ms))]


@pytest.mark.parametrize(
    ("rate", "chunk_ms", "size_ms"),
    [(16_000, 20, 2000), (44_100, 100, 2000), (48_000, 50, 2000), (16_000, 100, 1000),
     (44_100, 20, 2000), (8_000, 30, 2000)],
)
def test_audio_sample_count_is_exact(rate, chunk_ms, size_ms):
    win = window("audio", audio_stream(rate, chunk_ms), size_ms=size_ms)
    got = assemble(win)
    assert isinstance(got, AudioInput)
    assert got.samples.dtype == np.float32
    assert len(got.samples) == sample_count(size_ms * MS, rate) == size_ms * rate // 1000
    assert got.filled_samples == 0 and not got.gap_filled
    # sample i belongs to the chunk starting at or before start + i / rate
    idx = np.arange(len(got.samples))
    t_ms = idx * 1000 / rate
    expected_chunk_ts = (np.floor((t_ms + 300) / chunk_ms) * chunk_ms - 300)
    assert np.array_equal(got.samples, expected_chunk_ts.astype(np.float32))


def test_audio_is_cut_by_timestamps():
    rate = 1000
    chunks = [audio(-50, 100, rate, seq=0), audio(1950, 100, rate, seq=1)]
    got = assemble(window("audio", chunks))
    assert len(got.samples) == 2000
    assert np.array_equal(got.samples[:50], np.arange(50, 100, dtype=np.float32))
    assert np.array_equal(got.samples[1950:], np.arange(50, dtype=np.float32))
    assert got.filled_samples == 1900 and np.all(got.samples[50:1950] == 0)


@pytest.mark.parametrize(
    ("gaps_ms", "filled"),
    [([], 0), ([500], 100), ([500, 1000, 1900], 300), ([0], 100)],
)
def test_audio_gaps_are_zero_filled_and_counted(gaps_ms, filled):
    rate = 1000
    chunks = [audio(ts, 100, rate, value=1.0, seq=i) for i, ts in enumerate(range(0, 2000, 100))
              if ts not in gaps_ms]
    got = assemble(window("audio", chunks))
    assert got.filled_samples == filled
    assert got.gap_filled is bool(filled)
    assert float(got.samples.sum()) == 2000 - filled


def test_audio_overlap_keeps_the_earlier_chunk():
    chunks = [audio(0, 1000, 1000, value=1.0, seq=0), audio(900, 1100, 1000, value=2.0, seq=1)]
    got = assemble(window("audio", chunks))
    assert np.all(got.samples[:1000] == 1.0) and np.all(got.samples[1000:] == 2.0)


def test_mixed_audio_rates_raise_or_resample():
    chunks = [audio(0, 16_000, 16_000, value=1.0, seq=0),
              audio(1000, 48_000, 48_000, value=1.0, seq=1)]
    with pytest.raises(MixedSampleRateError):
        assemble(window("audio", chunks))
    got = assemble(window("audio", chunks), resample_to_hz=16_000)
    assert len(got.samples) == 32_000 and got.filled_samples == 0
    assert np.allclose(got.samples, 1.0)


def imu(ts_ms, n, rate, seq=0, with_times=True, jitter_ns=0):
    times = ts_ms * MS + np.rint(np.arange(n) * NS_PER_S / rate).astype(np.int64) + jitter_ns
    t_s = times / NS_PER_S
    data = np.stack([t_s * (c + 1) for c in range(6)], axis=1).astype(np.float32)
    end = int(times[-1]) + round(NS_PER_S / rate)
    return SensorChunk("imu", "d1", int(times[0]), end, seq, data, float(rate),
                       times if with_times else None, 0, seq)


@pytest.mark.parametrize(
    ("rate", "batch", "with_times", "jitter_ns"),
    [(100, 10, True, 0), (200, 40, False, 0), (400, 100, True, 0), (100, 25, True, 1_000_000)],
)
def test_imu_grid_is_exact_and_linear(rate, batch, with_times, jitter_ns):
    step_ms = batch * 1000 // rate
    chunks = [imu(ts, batch, rate, seq=i, with_times=with_times, jitter_ns=jitter_ns)
              for i, ts in enumerate(range(-200, 5200, step_ms))]
    got = assemble(window("imu", chunks, size_ms=5000))
    assert isinstance(got, ImuInput)
    assert got.samples.shape == (5 * rate, 6) and got.samples.dtype == np.float32
    assert got.filled_samples == 0
    t_s = np.arange(5 * rate) / rate
    for c in range(6):  # the signal is linear in time, so interpolation is exact
        assert np.allclose(got.samples[:, c], t_s * (c + 1), atol=1e-4)


def test_imu_gap_is_interpolated_and_flagged():
    rate = 100
    chunks = [imu(ts, 10, rate, seq=i) for i, ts in enumerate(range(0, 5000, 100))
              if ts not in (1000, 1100, 1200)]
    got = assemble(window("imu", chunks, size_ms=5000))
    assert got.filled_samples == 30 and got.gap_filled
    t_s = np.arange(500) / rate
    assert np.allclose(got.samples[:, 0], t_s, atol=1e-4)  # linear across the gap


def test_imu_mixed_rates():
    chunks = [imu(0, 250, 100, seq=0), imu(2500, 500, 200, seq=1)]
    with pytest.raises(MixedSampleRateError):
        assemble(window("imu", chunks, size_ms=5000))
    got = assemble(window("imu", chunks, size_ms=5000), resample_to_hz=400)
    assert got.samples.shape == (2000, 6)


def frame(modality, ts_ms, dtype=np.uint8, seq=0):
    shape = (4, 4, 3) if modality == "vision" else (4, 4)
    data = np.full(shape, seq, dtype=dtype)
    return SensorChunk(modality, "d1", ts_ms * MS, (ts_ms + 200) * MS, seq, data, None, None,
                       0, seq)


@pytest.mark.parametrize(
    ("ts_ms", "expected_ts"),
    [([0, 400, 800, 1900], (0, 1900)), ([700], (700, 700)), ([300, 100, 1200], (100, 1200))],
)
def test_vision_first_and_last(ts_ms, expected_ts):
    chunks = [frame("vision", t, seq=i) for i, t in enumerate(ts_ms)]
    got = assemble(window("vision", chunks))
    assert isinstance(got, FramesInput)
    assert got.ts_ns == tuple(t * MS for t in expected_ts)
    assert len(got.frames) == 2 and got.frames[0].shape == (4, 4, 3)


@pytest.mark.parametrize(
    ("modality", "dtype", "ts_ms", "expected_ts", "encoding"),
    [
        ("depth", np.uint16, [0, 900, 1300], 900, "u16_mm"),
        ("depth", np.float32, [0, 1100, 1900], 1100, "f32_m"),
        ("thermal", np.uint8, [900, 1100], 900, "u8"),  # tie: the earlier
        ("thermal", np.uint16, [100], 100, "u16"),
        ("thermal", np.float32, [300, 1600], 1600, "f32_c"),
    ],
)
def test_single_frame_nearest_middle(modality, dtype, ts_ms, expected_ts, encoding):
    chunks = [frame(modality, t, dtype=dtype, seq=i) for i, t in enumerate(ts_ms)]
    got = assemble(window(modality, chunks))
    assert isinstance(got, FrameInput)
    assert (got.ts_ns, got.encoding) == (expected_ts * MS, encoding)


def test_empty_or_bad_windows_raise_typed_errors():
    with pytest.raises(AssemblyError):
        assemble(window("audio", []))
    with pytest.raises(AssemblyError):
        assemble(window("depth", [frame("depth", 2500, np.uint16)]))  # outside the window
    with pytest.raises(AssemblyError):
        frame_encoding("depth", np.zeros((2, 2), np.int8))
    bad = SensorChunk("imu", "d1", 0, MS, 0, np.zeros((3, 5), np.float32), 100.0, None, 0, 0)
    with pytest.raises(AssemblyError):
        assemble(window("imu", [bad], size_ms=5000))


def test_int16_pcm_chunks_assemble_exactly_as_their_float32_decoding():
    rng = np.random.default_rng(0)
    pcm = [rng.integers(-32768, 32768, 1600, dtype=np.int16) for _ in range(24)]

    def chunks(as_float, every=1):
        out = []
        for i, p in enumerate(pcm):
            data = p.astype(np.float32) / 32768.0 if as_float or i % every else p
            ts = -200 + i * 100  # 100 ms chunks at 16 kHz; some gaps where i % 7 == 3
            if i % 7 != 3:
                out.append(SensorChunk("audio", "d1", ts * MS, (ts + 100) * MS, i, data,
                                       16000.0, None, 0, i))
        return out

    want = assemble(window("audio", chunks(as_float=True)))
    for got in (assemble(window("audio", chunks(as_float=False))),  # all int16
                assemble(window("audio", chunks(as_float=False, every=2)))):  # mixed
        assert got.samples.dtype == np.float32
        assert np.array_equal(got.samples.view(np.uint32), want.samples.view(np.uint32))
        assert got.filled_samples == want.filled_samples > 0
