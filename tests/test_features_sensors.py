"""Depth, thermal and IMU featurizers: values, holes, channel order, resampling, rejections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from streambind.errors import FeatureError
from streambind.features import (
    DepthParams,
    depth_frame,
    imu_rows,
    imu_window,
    imu_windows,
    thermal_frame,
)

FB = 518.857901 * 0.075  # focal length (px) x baseline (m) of the default Kinect v1 params


# ---------------------------------------------------------------- depth


def test_depth_constant_gives_documented_disparity():
    out = depth_frame(np.full((480, 640), 1500, np.uint16), "u16_mm")
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((1, 224, 224), FB / 1.5 / 75.0))
    metres = depth_frame(np.full((480, 640), 1.5, np.float32), "f32_m")
    torch.testing.assert_close(metres, out)


def test_depth_nearer_is_larger_and_clamped():
    far = depth_frame(np.full((60, 80), 4.0, np.float32), "f32_m")
    near = depth_frame(np.full((60, 80), 1.0, np.float32), "f32_m")
    assert float(near.mean()) > float(far.mean())
    # Closer than f*b/75 = 0.52 m saturates at 1.
    torch.testing.assert_close(
        depth_frame(np.full((60, 80), 0.1, np.float32), "f32_m"), torch.ones(1, 224, 224)
    )


def test_depth_holes_become_zero_disparity_and_stay_finite():
    mm = np.full((480, 640), 2000, np.uint16)
    mm[:, :320] = 0  # left half: no return
    out = depth_frame(mm, "u16_mm")[0]
    assert torch.isfinite(out).all()
    # Crop spans x 37..261 of the 298-wide resize; the hole covers resized x < 149.
    assert torch.all(out[:, :100] == 0)
    torch.testing.assert_close(out[:, 130:], torch.full((224, 94), FB / 2.0 / 75.0))
    metres = np.full((480, 640), 2.0, np.float32)
    metres[:, :320] = np.nan
    metres[0, 400] = np.inf
    metres[1, 400] = -1.0
    alt = depth_frame(metres, "f32_m")[0]
    assert torch.isfinite(alt).all()
    torch.testing.assert_close(alt[:, :100], torch.zeros(224, 100))


def test_depth_params_standardize_and_geometry():
    params = DepthParams(focal_px=500.0, baseline_m=0.1, max_disparity=50.0, mean=0.5, std=0.25)
    out = depth_frame(np.full((300, 200), 2.0, np.float32), "f32_m", params=params)
    torch.testing.assert_close(out, torch.full((1, 224, 224), ((25.0 / 50.0) - 0.5) / 0.25))
    # Shorter side to 224 then centre crop: a top/bottom split of a tall frame stays centred.
    tall = np.full((448, 224), 1.0, np.float32)
    tall[224:] = 2.0
    col = depth_frame(tall, "f32_m")[0, :, 100]
    assert col[0] > col[-1]


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: depth_frame(np.ones((4, 4), np.uint16), "u16"), "bad_encoding"),
        (lambda: depth_frame(np.ones((4, 4, 3), np.float32), "f32_m"), "bad_shape"),
        (lambda: depth_frame(np.ones(16, np.float32), "f32_m"), "bad_shape"),
        (lambda: depth_frame(np.ones((4, 4), np.float32), "u16_mm"), "bad_shape"),
        (lambda: depth_frame(np.ones((4, 0), np.float32), "f32_m"), "bad_shape"),
        (
            lambda: depth_frame(np.ones((4, 4), np.float32), "f32_m", params=DepthParams(std=0)),
            "bad_shape",
        ),
    ],
)
def test_depth_rejections(call, reason):
    with pytest.raises(FeatureError) as err:
        call()
    assert err.value.reason == reason


# ---------------------------------------------------------------- thermal


def test_thermal_u8_auto_is_the_grayscale_image_path():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    out = thermal_frame(img, "u8")
    assert out.shape == (1, 224, 224)
    ref = np.asarray(Image.fromarray(img).resize((298, 224), Image.Resampling.BICUBIC))
    left = int(round((298 - 224) / 2.0))
    np.testing.assert_allclose(out[0].numpy(), ref[:, left : left + 224] / 255.0, atol=1e-6)


def test_thermal_celsius_auto_is_per_frame_min_max():
    # Varies along the short side only, so the centre crop keeps the coldest and hottest rows.
    yy, xx = np.mgrid[0:240, 0:320]
    celsius = (15.0 + 0.05 * yy + 0.0 * xx).astype(np.float32)
    out = thermal_frame(celsius, "f32_c")
    assert 0.0 <= float(out.min()) < 0.05 and 0.95 < float(out.max()) <= 1.0
    # Per-frame min-max ignores gain and offset...
    torch.testing.assert_close(thermal_frame(2 * celsius + 40, "f32_c"), out, atol=1e-5, rtol=0)
    # ...a fixed range does not: 20 C sits at (20 + 20) / 80 = 0.5 of the default range.
    fixed = thermal_frame(np.full((60, 80), 20.0, np.float32), "f32_c", normalization="fixed")
    torch.testing.assert_close(fixed, torch.full((1, 224, 224), 0.5))
    custom = thermal_frame(
        np.full((60, 80), 30.0, np.float32), "f32_c", normalization="fixed", value_range=(20, 40)
    )
    torch.testing.assert_close(custom, torch.full((1, 224, 224), 0.5))
    hot = thermal_frame(np.full((60, 80), 500.0, np.float32), "f32_c", normalization="fixed")
    torch.testing.assert_close(hot, torch.ones(1, 224, 224))


def test_thermal_u16_and_flat_frames():
    counts = np.linspace(1000, 9000, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = thermal_frame(counts, "u16")
    assert float(out.min()) < 0.02 and float(out.max()) > 0.98
    fixed = thermal_frame(np.full((8, 8), 65535, np.uint16), "u16", normalization="fixed")
    torch.testing.assert_close(fixed, torch.ones(1, 224, 224))
    flat = thermal_frame(np.full((50, 50), 300, np.uint16), "u16", normalization="minmax")
    torch.testing.assert_close(flat, torch.zeros(1, 224, 224))


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: thermal_frame(np.ones((4, 4), np.uint8), "rgb8"), "bad_encoding"),
        (lambda: thermal_frame(np.full((4, 4), np.nan, np.float32), "f32_c"), "non_finite"),
        (lambda: thermal_frame(np.ones((4, 4, 3), np.uint8), "u8"), "bad_shape"),
        (lambda: thermal_frame(np.full((4, 4), 300), "u8"), "bad_shape"),
        (lambda: thermal_frame(np.ones((4, 4), np.float32), "u16"), "bad_shape"),
        (lambda: thermal_frame(np.ones((4, 4)), "f32_c", normalization="clahe"), "bad_shape"),
        (
            lambda: thermal_frame(
                np.ones((4, 4)), "f32_c", normalization="fixed", value_range=(5, 5)
            ),
            "bad_shape",
        ),
    ],
)
def test_thermal_rejections(call, reason):
    with pytest.raises(FeatureError) as err:
        call()
    assert err.value.reason == reason


# ---------------------------------------------------------------- IMU

FREQS = (0.4, 1.0, 1.6, 2.0, 3.0, 4.0)  # Hz, one per channel, whole cycles in 5 s
OFFSETS = (0.1, -0.2, 9.81, 0.01, -0.02, 0.03)  # gravity on acc_z, like a device lying flat


def imu_signal(rate: float, seconds: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 6) rows at ``rate`` and the expected (6, 2000) channel-major output at 400 Hz."""

    def at(t):
        return np.stack(
            [OFFSETS[c] + (c + 1) * 0.1 * np.sin(2 * np.pi * FREQS[c] * t) for c in range(6)]
        )

    t_in = np.arange(int(round(seconds * rate))) / rate
    return at(t_in).T.astype(np.float32), at(np.arange(2000) / 400.0)


@pytest.mark.parametrize("rate", [400, 100, 50, 1000, 833.3])
def test_imu_channels_and_resampling_of_known_sinusoids(rate):
    rows, expected = imu_signal(rate)
    out = imu_window(rows, rate)
    assert out.shape == (6, 2000) and out.dtype == torch.float32
    # The last input sample is at 5 s - 1/rate: leave out the extrapolated tail and the
    # filter's edge transients (0.25 s each side).
    interior = slice(100, 2000 - int(np.ceil(400 / rate)) - 100)
    np.testing.assert_allclose(out.numpy()[:, interior], expected[:, interior], atol=5e-3)
    for c in range(6):  # each row is its own channel: its dominant frequency and its mean
        spectrum = np.abs(np.fft.rfft(out[c].numpy() - out[c].numpy().mean()))
        assert np.argmax(spectrum) == round(FREQS[c] * 5)
        assert abs(float(out[c].mean()) - OFFSETS[c]) < 0.02


def test_imu_reshape_layout_would_fail():
    rows, expected = imu_signal(400)
    out = imu_window(rows, 400).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    scrambled = rows.reshape(6, 2000)  # the bug: reshape instead of transpose
    assert np.abs(scrambled - expected).max() > 1.0


def test_imu_anti_aliasing_removes_content_above_200_hz():
    rows, expected = imu_signal(1000)
    t = np.arange(5000) / 1000
    noisy = rows.copy()
    noisy[:, 0] += np.sin(2 * np.pi * 330.0 * t)  # would alias to 70 Hz without filtering
    out = imu_window(noisy, 1000).numpy()
    np.testing.assert_allclose(out[0, 100:-100], expected[0, 100:-100], atol=0.02)
    # Picking the nearest input sample for each 400 Hz output instead keeps the alias.
    naive = noisy[np.round(np.arange(2000) * 2.5).astype(int).clip(0, 4999), 0]
    assert np.abs(naive - expected[0]).max() > 0.5


def test_imu_batched_padding_and_columns():
    rows, expected = imu_signal(100)
    batch = imu_windows([rows, rows[:, ::-1] * 2], 100)
    assert batch.shape == (2, 6, 2000)
    torch.testing.assert_close(batch[0], imu_window(rows, 100))
    torch.testing.assert_close(batch[1], imu_window(rows[:, ::-1] * 2, 100))
    short = imu_window(rows[:450], 100)  # 4.5 s: padded with each channel's last value
    assert torch.all(short[:, 1800:] == short[:, 1799:1800])
    cols = [rows[:, c] for c in range(6)]
    np.testing.assert_array_equal(imu_rows(cols), rows)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: imu_window(np.zeros((6, 2000), np.float32), 400), "bad_shape"),
        (lambda: imu_window(np.zeros((2000, 3), np.float32), 400), "bad_shape"),
        (lambda: imu_window(np.zeros(12000, np.float32), 400), "bad_shape"),
        (lambda: imu_window(np.zeros((900, 6), np.float32), 400), "too_short"),
        (lambda: imu_window(np.full((2000, 6), np.nan, np.float32), 400), "non_finite"),
        (lambda: imu_window(np.zeros((2000, 6), np.float32), -1), "bad_shape"),
        (lambda: imu_windows([np.zeros((10, 6)), np.zeros((11, 6))], 2), "bad_shape"),
        (lambda: imu_rows([np.zeros(3)] * 5), "bad_shape"),
    ],
)
def test_imu_rejections(call, reason):
    with pytest.raises(FeatureError) as err:
        call()
    assert err.value.reason == reason
