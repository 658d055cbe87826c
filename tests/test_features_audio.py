"""Audio featurizer: Kaldi fbank parity, resampling, mel placement, PCM decoding, rejections.

Fixture ``fixtures/features/audio_fbank_ref.npz`` (how it was made, once, outside the repo):
the 2 s, 16 kHz test signal of :func:`reference_signal` below was fed to a deliberately slow,
independent float64 implementation that follows Kaldi's documented fbank steps literally,
one frame at a time with Python loops: subtract the clip mean; for each of the
1 + (32000 - 400) // 160 = 198 frames of 400 samples at a 160-sample shift, subtract the
frame mean, pre-emphasize with the first sample replicated (y[0] = x[0] - 0.97 x[0],
y[n] = x[n] - 0.97 x[n-1]), multiply by the symmetric Hann window
0.5 - 0.5 cos(2 pi n / 399), zero-pad to 512, take the power |X[k]|^2 of an explicit DFT
sum (cos/sin dot products, no FFT) for k = 0..256, weight it with 128 triangular filters
built bin by bin on the HTK mel scale 1127 ln(1 + f / 700) between 20 Hz and 8000 Hz (centres
equally spaced in mel, Nyquist bin weight 0), take ln(max(energy, float32 epsilon)); then
transpose to (128, 198), zero-pad to 204 frames and map x -> (x + 4.268) / 9.138. Stored:
``features`` (128, 204) float32, ``frames`` (198) and ``signal_head`` (the first 16 input
samples, to prove the signal below is still the one the fixture was made from).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from streambind.errors import FeatureError
from streambind.features import audio_window, audio_windows, decode_pcm, to_mono
from streambind.features.audio import AUDIO_MEAN, AUDIO_STD, kaldi_fbank

FIXTURE = Path(__file__).parent / "fixtures" / "features" / "audio_fbank_ref.npz"


def reference_signal() -> np.ndarray:
    """440 Hz tone + 200->3200 Hz chirp + LCG noise + 0.01 DC, with 0.2 s of digital silence."""
    state, noise = 12345, []
    for _ in range(32000):
        state = (1103515245 * state + 12345) % 2147483648
        noise.append(state / 2147483648.0 - 0.5)
    out = []
    for i in range(32000):
        t = i / 16000.0
        v = (
            0.3 * math.sin(2 * math.pi * 440.0 * t)
            + 0.2 * math.sin(2 * math.pi * (200.0 * t + 750.0 * t * t))
            + 0.1 * noise[i]
            + 0.01
        )
        out.append(0.0 if 20000 <= i < 23200 else v)
    return np.array(out, dtype=np.float32)


def tone(freq: float, rate: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_matches_reference_log_mel_fixture():
    ref = np.load(FIXTURE)
    signal = reference_signal()
    np.testing.assert_array_equal(signal[:16], ref["signal_head"])
    out = audio_window(signal, 16000)
    assert out.shape == (1, 128, 204) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), ref["features"], atol=1e-3, rtol=0)
    # 198 real frames, then padding: zero log-energy normalized like everything else.
    assert int(ref["frames"]) == 198
    pad = (0.0 - AUDIO_MEAN) / AUDIO_STD
    np.testing.assert_allclose(out[0, :, 198:].numpy(), pad, atol=1e-6)


def test_batched_equals_single_and_list_input():
    sig = reference_signal()
    batch = np.stack([sig, 0.5 * sig[::-1].copy(), tone(1000.0, 16000)])
    out = audio_windows(batch, 16000)
    assert out.shape == (3, 1, 128, 204)
    for i in range(3):
        torch.testing.assert_close(out[i], audio_window(batch[i], 16000), atol=1e-5, rtol=0)
    torch.testing.assert_close(audio_windows(list(batch), 16000), out)


def test_batches_larger_than_one_chunk_keep_clip_order():
    from streambind.features.audio import AUDIO_CHUNK

    n = 2 * AUDIO_CHUNK + 3  # several chunks on the thread pool, the last one partial
    clips = np.stack([tone(200.0 + 150.0 * i, 48000, seconds=0.5) for i in range(n)])
    out = audio_windows(clips, 48000)
    assert out.shape == (n, 1, 128, 204)
    for i in (0, AUDIO_CHUNK, n - 1):
        torch.testing.assert_close(out[i], audio_window(clips[i], 48000), atol=1e-5, rtol=0)


def multitone(rate: int) -> np.ndarray:
    """Two loud tones over a floor of 60 quiet tones up to 7 kHz: defined at any rate.

    The quiet floor stands in for the noise every real recording has; without it, bins far
    from the tones hold only ~-120 dB leakage, which a resampler's stopband legitimately
    changes.
    """
    out = tone(1000.0, rate) + tone(2500.0, rate, amp=0.2)
    for k in range(60):
        out += tone(100.0 + 115.0 * k + 0.37 * k * k, rate, amp=0.004)
    return out


@pytest.mark.parametrize("rate", [48000, 44100, 22050])
def test_tone_at_other_rates_matches_16k(rate):
    a, b = audio_window(multitone(16000), 16000)[0], audio_window(multitone(rate), rate)[0]
    # Mel bins 118+ lie above ~6.7 kHz, in the resampler's transition band below the new
    # 8 kHz Nyquist, where the signal has nothing; compare the band that carries it.
    diff = (a - b).abs()[:118, :198]
    assert diff.mean() < 2e-3
    assert torch.quantile(diff.flatten(), 0.99) < 0.02


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_peaks_at_htk_mel_bin(freq):
    # Independent of the module: 128 centres equally spaced in HTK mel between 20 Hz and 8 kHz.
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(8000.0)
    centres = [lo + (k + 1) * (hi - lo) / 129 for k in range(128)]
    expected = min(range(128), key=lambda k: abs(centres[k] - mel(freq)))
    feats = audio_window(tone(freq, 16000), 16000)[0, :, :198].mean(dim=1)
    assert abs(int(feats.argmax()) - expected) <= 1
    # 40 bins away the energy is far lower: > 1 normalized unit = 9.1 nats, about 40 dB.
    far = expected + 40 if expected < 64 else expected - 40
    assert feats.max() - feats[far] > 1.0


def test_clip_mean_removed_and_short_clip_padded():
    sig = tone(700.0, 16000, seconds=1.0)
    with_dc = audio_window(sig + 0.3, 16000)
    torch.testing.assert_close(with_dc, audio_window(sig, 16000), atol=2e-4, rtol=0)
    frames = 1 + (16000 - 400) // 160
    pad = (0.0 - AUDIO_MEAN) / AUDIO_STD
    assert torch.allclose(with_dc[0, :, frames:], torch.tensor(pad))
    assert not torch.allclose(with_dc[0, :, frames - 1], torch.tensor(pad))
    # A long clip is cut to 204 frames.
    assert audio_window(tone(700.0, 16000, seconds=3.0), 16000).shape == (1, 128, 204)


def test_blocked_mel_product_equals_dense_filterbank():
    from streambind.features.audio import mel_banks, mel_energies

    banks = mel_banks()
    assert banks.shape == (257, 128) and torch.all(banks[-1] == 0)  # Nyquist bin unused
    power = torch.rand(50, 257, generator=torch.Generator().manual_seed(0)) * 100
    torch.testing.assert_close(mel_energies(power), power @ banks, atol=1e-4, rtol=1e-6)


def test_fbank_floor_on_silence():
    out = kaldi_fbank(torch.zeros(1, 16000))
    assert torch.allclose(out, torch.tensor(math.log(np.finfo(np.float32).eps)))


def test_decode_pcm_and_to_mono():
    pcm = np.array([[32767, -32768], [0, 16384], [-16384, 0]], dtype="<i2")
    mono = decode_pcm("pcm_s16le", 2, pcm.tobytes())
    np.testing.assert_allclose(mono, [(32767 - 32768) / 2 / 32768, 0.25, -0.25], atol=1e-7)
    assert mono.dtype == np.float32
    f32 = np.array([0.5, -0.5, 0.25], dtype="<f4")
    np.testing.assert_array_equal(decode_pcm("f32le", 1, f32.tobytes()), f32)
    np.testing.assert_allclose(to_mono(np.array([-32768, 16384], np.int16)), [-1.0, 0.5])
    np.testing.assert_allclose(to_mono(np.array([[0.2, 0.4], [1.0, -1.0]])), [0.3, 0.0])
    # int16 given straight to the featurizer is scaled like to_mono does.
    sig = reference_signal()  # broadband, so int16 quantization noise is far below it
    torch.testing.assert_close(
        audio_window((sig * 32767).astype(np.int16), 16000),
        audio_window(sig, 16000),
        atol=1e-2,
        rtol=0,
    )


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: decode_pcm("mp3", 1, b"\0\0"), "bad_encoding"),
        (lambda: decode_pcm("pcm_s16le", 2, b"\0\0\0"), "decode_error"),
        (lambda: decode_pcm("pcm_s16le", 0, b""), "bad_shape"),
        (lambda: decode_pcm("f32le", 1, np.array([np.nan], "<f4").tobytes()), "non_finite"),
        (lambda: audio_window(np.zeros((2, 32000), np.float32), 16000), "bad_shape"),
        (lambda: audio_window(np.zeros(300, np.float32), 16000), "too_short"),
        (lambda: audio_window(np.full(32000, np.nan, np.float32), 16000), "non_finite"),
        (lambda: audio_window(np.zeros(32000, np.float32), 0), "bad_shape"),
        (lambda: audio_window(np.array(["a", "b"]), 16000), "bad_shape"),
        (lambda: audio_windows([np.zeros(100), np.zeros(200)], 16000), "bad_shape"),
        (lambda: audio_windows([], 16000), "bad_shape"),
        (lambda: to_mono(np.zeros((2, 32000), np.float32)), "bad_shape"),
    ],
)
def test_rejections(call, reason):
    with pytest.raises(FeatureError) as err:
        call()
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("up", "down", "n"),
    [(1, 3, 9600), (160, 441, 8820), (2, 1, 1600), (320, 147, 4410), (3, 7, 1000), (5, 1, 7)],
)
def test_batched_resampler_equals_scipy(up, down, n):
    from scipy.signal import resample_poly

    from streambind.features.resample import resample_poly_batch

    x = np.sin(np.arange(3 * n).reshape(3, n) * 0.37).astype(np.float32)
    x[1] = np.cos(np.arange(n) * 1.3)
    expected = resample_poly(x, up, down, axis=-1)
    got = resample_poly_batch(torch.from_numpy(x), up, down).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)
