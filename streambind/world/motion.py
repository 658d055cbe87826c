"""What the IMU feels: each activity's acceleration and rotation for any time span.

The IMU is worn by the subject (walking, running, falling, sitting, talking, typing, the
dog's collar) or fixed to the thing that moves (the door, the table under the glass, the
loudspeaker, the mantelpiece over the fire, a shelf in the empty room). Gait is periodic
(vertical bounce at the step rate, sway at the stride rate, harder impacts when running);
a fall is free fall, an impact spike, then stillness with gravity along another axis; a
slam is a fast swing and a ringing shock. Nuisance: the device's mounting orientation
(any yaw, up to 25 degrees of tilt), amplitude, tempo, phase and sensor noise.

Rows are ``acc_x, acc_y, acc_z`` (m/s², specific force: +9.81 up at rest) and
``gyro_x, gyro_y, gyro_z`` (rad/s) in the device frame.
"""

from __future__ import annotations

import numpy as np

from streambind.world import rhythm
from streambind.world.nuisance import Nuisance, event_times, hash01

G = 9.81


def _pulses(t: np.ndarray, onsets: np.ndarray, decay_s: float, ring_hz: float = 0.0
            ) -> np.ndarray:
    """Sum of decaying pulses (optionally ringing) starting at ``onsets``."""
    out = np.zeros(t.shape)
    for onset in onsets.tolist():
        tau = t - onset
        live = (tau >= 0) & (tau < 8 * decay_s)
        if live.any():
            x = tau[live]
            ring = np.cos(2 * np.pi * ring_hz * x) if ring_hz else 1.0
            out[live] += np.exp(-x / decay_s) * ring
    return out


def _gait(t, n, rng, acc, gyro, running: bool) -> None:
    phi = rhythm.gait_phase(n, t, running)
    amp = 7.0 if running else 2.2
    acc[:, 2] += amp * (np.sin(2 * phi) + 0.4 * np.sin(4 * phi + 0.5))
    if running:
        acc[:, 2] += 9.0 * np.maximum(np.sin(2 * phi), 0) ** 8  # heel strikes
    acc[:, 0] += 0.6 * amp * np.sin(2 * phi + 1.0)
    acc[:, 1] += 0.5 * amp * np.sin(phi)
    spin = 2.2 if running else 1.0
    gyro[:, 0] += 0.2 * spin * np.sin(phi + 0.3)
    gyro[:, 1] += 0.35 * spin * np.sin(2 * phi)
    gyro[:, 2] += 0.25 * spin * np.sin(phi)


def _fall(t, n, rng, acc, gyro) -> np.ndarray:
    tilt = rhythm.fall_tilt(n, t)
    rate = np.gradient(tilt, t) if t.size > 1 else np.zeros_like(t)
    falling = rate > 0.5
    acc[:, 2] -= 0.75 * G * falling  # near free fall on the way down
    gyro[:, 1] += rate
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    hits = rhythm.impacts(n, t0, t1, rhythm.FALL_PERIOD_S, rhythm.FALL_IMPACT_S, 0.5)
    shock = _pulses(t, hits, 0.04, 22.0)
    acc[:, 2] += 28.0 * shock
    acc[:, 0] += 12.0 * shock
    gyro[:, 0] += 3.0 * _pulses(t, hits, 0.05, 9.0)
    standing = tilt < 0.05
    acc[:, :2] += 0.15 * standing[:, None] * np.sin(2 * np.pi * 0.4 * t + np.arange(2)[:, None]).T
    return tilt


def _door(t, n, rng, acc, gyro) -> None:
    angle = rhythm.door_angle(n, t)
    rate = np.gradient(angle, t) if t.size > 1 else np.zeros_like(t)
    gyro[:, 2] += rate
    acc[:, 0] += 0.8 * rate ** 2 * 0.1  # centripetal, the device near the handle
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    slams = rhythm.impacts(n, t0, t1, rhythm.DOOR_PERIOD_S, rhythm.DOOR_SLAM_S[1], 0.5)
    shock = _pulses(t, slams, 0.05, 35.0)
    acc[:, 1] += 22.0 * shock
    acc[:, 2] += 6.0 * shock


def _glass(t, n, rng, acc, gyro) -> None:
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    hits = rhythm.impacts(n, t0, t1, rhythm.GLASS_PERIOD_S, 0.15, 0.8)
    env = _pulses(t, hits, 0.1)
    acc += 1.6 * env[:, None] * rng.standard_normal(acc.shape)
    gyro += 0.08 * env[:, None] * rng.standard_normal(gyro.shape)


def _dog(t, n, rng, acc, gyro) -> None:
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    _, onsets = rhythm.bark_times(n, t0, t1, 0.3)
    jerk = _pulses(t, onsets, 0.04)
    acc[:, 2] += 5.0 * jerk
    acc[:, 0] += 2.5 * jerk
    gyro[:, 1] += 2.0 * _pulses(t, onsets, 0.06, 6.0)
    acc[:, :2] += 0.4 * np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.37 * t)], 1)


def _gestures(t, n, rng, acc, gyro) -> None:
    h = hash01(n.seed, np.arange(18), 201)
    for axis in range(3):
        for j in range(3):
            f = 0.3 + 0.8 * h[axis * 3 + j]
            ph = 2 * np.pi * h[9 + axis * 3 + j]
            acc[:, axis] += 0.45 * np.sin(2 * np.pi * f * t + ph)
            gyro[:, axis] += 0.12 * np.cos(2 * np.pi * f * t + ph)


def _music(t, n, rng, acc, gyro) -> None:
    _, tau = rhythm.beat_index(n, t)
    hum_hz = 45 + 40 * float(hash01(n.seed, 0, 211))
    acc[:, 2] += 0.5 * (0.4 + 0.6 * np.exp(-4 * tau)) * np.sin(2 * np.pi * hum_hz * t)
    acc[:, 2] += 1.2 * np.exp(-tau / 0.03)
    acc[:, 0] += 0.3 * np.exp(-tau / 0.03)


def _typing(t, n, rng, acc, gyro) -> None:
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    _, onsets = event_times(t0, t1, rhythm.KEY_PERIOD_S / n.tempo, phase_s=n.phase_s,
                            jitter=0.8, seed=n.seed, salt=151, keep=0.85, lookback_s=0.05)
    taps = _pulses(t, onsets, 0.012)
    acc[:, 2] -= 1.2 * taps
    gyro[:, 0] += 0.25 * taps
    acc[:, 0] += 0.1 * np.sin(2 * np.pi * 0.2 * t)


def _fire(t, n, rng, acc, gyro) -> None:
    t0, t1 = float(t[0]), float(t[-1]) + 1e-9
    _, onsets = event_times(t0, t1, rhythm.CRACKLE_PERIOD_S, phase_s=n.phase_s, jitter=1.0,
                            seed=n.seed, salt=162, keep=0.5, lookback_s=0.02)
    acc[:, 2] += 0.35 * _pulses(t, onsets, 0.006, 60.0)
    acc += 0.05 * rng.standard_normal(acc.shape)


def _sitting(t, n, rng, acc, gyro) -> None:
    b = rhythm.breath(n, t)
    acc[:, 2] += 0.15 * b
    acc[:, 0] += 0.08 * np.roll(b, 3)
    gyro[:, 1] += 0.03 * np.cos(2 * np.pi * (t - n.phase_s) * n.tempo / rhythm.BREATH_S)


def render_imu(name: str, t0_s: float, num_samples: int, sample_rate: float, n: Nuisance,
               rng: np.random.Generator) -> np.ndarray:
    """(N, 6) float32 IMU rows of activity ``name`` from ``t0_s`` into its segment."""
    from streambind.world.activities import activity

    act = activity(name).name
    t = t0_s + np.arange(num_samples) / sample_rate
    acc = np.zeros((num_samples, 3))
    gyro = np.zeros((num_samples, 3))
    tilt = np.zeros(num_samples)
    if act in ("walking", "running"):
        _gait(t, n, rng, acc, gyro, act == "running")
    elif act == "a person falling":
        tilt = _fall(t, n, rng, acc, gyro)
    elif act == "a door slamming":
        _door(t, n, rng, acc, gyro)
    elif act == "glass breaking":
        _glass(t, n, rng, acc, gyro)
    elif act == "a dog barking":
        _dog(t, n, rng, acc, gyro)
    elif act == "people talking":
        _gestures(t, n, rng, acc, gyro)
    elif act == "music playing":
        _music(t, n, rng, acc, gyro)
    elif act == "typing on a keyboard":
        _typing(t, n, rng, acc, gyro)
    elif act == "a fire crackling":
        _fire(t, n, rng, acc, gyro)
    elif act == "sitting still":
        _sitting(t, n, rng, acc, gyro)
    acc *= n.imu_amp
    gyro *= n.imu_amp
    # Gravity in the body frame, tipped by the body's tilt (a fall lays it sideways).
    acc[:, 0] += G * np.sin(tilt)
    acc[:, 2] += G * np.cos(tilt)
    rot = np.asarray(n.rotation)  # device mounting: body -> device is rot.T
    acc = acc @ rot
    gyro = gyro @ rot
    acc += n.acc_noise * rng.standard_normal(acc.shape)
    gyro += n.gyro_noise * rng.standard_normal(gyro.shape)
    return np.concatenate([acc, gyro], axis=1).astype(np.float32)
