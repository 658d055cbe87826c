"""IMU: N×6 samples to ImageBind's 6×2000 input (5 s at 400 Hz, channel-major).

Columns are acc x, y, z (m/s²) then gyro x, y, z (rad/s), as in the ``sensors.imu`` rows.
The output is the *transpose* of that layout: row c is channel c over time. (Reshaping an
(N, 6) array to (6, N) instead of transposing interleaves the channels; one public ImageBind
server does that, and the tests here catch it.)

Any input rate is resampled to 400 Hz with scipy's polyphase resampler, whose Kaiser-windowed
low-pass (beta 8) removes content above the new Nyquist frequency (200 Hz) before decimating. Edges
are extended linearly (``padtype="line"``) so a constant such as gravity on an accelerometer
axis does not ramp down at the window's ends. The result is cut or, when the input covers at
least ``MIN_COVERAGE`` of the 5 s, padded with each channel's last value to 2000 samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import resample_poly

from streambind.errors import FeatureError

from ._checks import BAD_SHAPE, TOO_SHORT, as_array, require_finite, require_rate

log = logging.getLogger(__name__)

IMU_RATE = 400
IMU_SAMPLES = 2000  # 5 s at 400 Hz
IMU_CHANNELS = 6
CHANNEL_NAMES = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
# Shortest input accepted, as a fraction of the 5 s window; the rest is edge-padded.
MIN_COVERAGE = 0.5
# Kaiser beta 8 instead of scipy's 5: ~10x less passband ripple, which would otherwise show as
# a periodic ~0.06% wobble on the large gravity offset of an accelerometer axis.
IMU_WINDOW = ("kaiser", 8.0)


def _check_batch(batch: object) -> np.ndarray:
    if isinstance(batch, list | tuple):
        if not batch:
            raise FeatureError("imu: empty batch", BAD_SHAPE)
        items = [as_array(item, "imu") for item in batch]
        if len({item.shape for item in items}) != 1:
            raise FeatureError("imu: windows in one batch must have equal shapes", BAD_SHAPE)
        arr = np.stack(items)
    else:
        arr = as_array(batch, "imu")
    if arr.ndim != 3 or arr.shape[2] != IMU_CHANNELS or arr.shape[0] == 0:
        hint = " (channel-major input? pass (N, 6) rows)" if IMU_CHANNELS in arr.shape[:-1] else ""
        raise FeatureError(
            f"imu: expected (N, 6) samples per window, got {arr.shape[1:]}{hint}", BAD_SHAPE
        )
    require_finite(arr, "imu")
    return arr.astype(np.float64)


def imu_windows(batch: object, sample_rate: float) -> torch.Tensor:
    """Many IMU windows at one rate: (B, N, 6) array or list of (N, 6) -> Tensor[B, 6, 2000]."""
    rate = require_rate(sample_rate, "imu")
    arr = _check_batch(batch)
    n = arr.shape[1]
    if n < 2 or n < MIN_COVERAGE * IMU_SAMPLES * rate / IMU_RATE:
        raise FeatureError(
            f"imu: {n} samples at {rate:g} Hz cover less than {MIN_COVERAGE:.0%} of 5 s",
            TOO_SHORT,
        )
    if rate != IMU_RATE:
        ratio = (Fraction(IMU_RATE) / Fraction(rate).limit_denominator(1000)).limit_denominator(
            1000
        )
        arr = resample_poly(
            arr, ratio.numerator, ratio.denominator, axis=1, padtype="line", window=IMU_WINDOW
        )
    if arr.shape[1] >= IMU_SAMPLES:
        arr = arr[:, :IMU_SAMPLES]
    else:
        arr = np.pad(arr, ((0, 0), (0, IMU_SAMPLES - arr.shape[1]), (0, 0)), mode="edge")
    # (B, T, C) -> (B, C, T): a transpose, never a reshape.
    out = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 2, 1), dtype=np.float32))
    return out


def imu_window(samples: object, sample_rate: float) -> torch.Tensor:
    """One IMU window: (N, 6) rows of acc x,y,z, gyro x,y,z, ~5 s at any rate -> Tensor[6, 2000]."""
    arr = as_array(samples, "imu")
    if arr.ndim != 2:
        raise FeatureError(f"imu: expected (N, 6) samples, got shape {arr.shape}", BAD_SHAPE)
    return imu_windows(arr[None], sample_rate)[0]


def imu_rows(columns: Sequence[Sequence[float]]) -> np.ndarray:
    """Stack six per-channel columns (acc_x .. gyro_z, e.g. Arrow columns) into (N, 6)."""
    if len(columns) != IMU_CHANNELS:
        raise FeatureError(f"imu: expected 6 columns, got {len(columns)}", BAD_SHAPE)
    cols = [as_array(col, "imu") for col in columns]
    if any(col.ndim != 1 for col in cols) or len({col.shape for col in cols}) != 1:
        raise FeatureError("imu: columns must be 1-D and of equal length", BAD_SHAPE)
    return np.stack(cols, axis=1).astype(np.float32)


__all__ = [
    "CHANNEL_NAMES",
    "IMU_RATE",
    "IMU_SAMPLES",
    "imu_rows",
    "imu_window",
    "imu_windows",
]
