"""Nuisance variation and deterministic event schedules shared by the renderers.

A :class:`Nuisance` is drawn once per activity segment (or per training window) from a
numpy Generator: camera placement, lighting and colours, subject position and size, room
depth and temperature, audio gain, pitch and noise, IMU orientation and amplitude. Every
renderer is a pure function of (activity, time, nuisance) plus a Generator for sensor
noise, so one segment renders continuously across chunks and frames, and the same seed
renders the same data.

Discrete events (footsteps, barks, key clicks, slams) come from :func:`event_times`: event
``k`` happens near ``phase + k * period`` with a hashed jitter, so any time span can be
rendered without state and consecutive chunks agree on where events fall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash01(seed: int, k: np.ndarray | int, salt: int = 0) -> np.ndarray:
    """Uniform [0, 1) values hashed from (seed, k, salt) (splitmix64), vectorized over ``k``."""
    with np.errstate(over="ignore"):
        x = (np.asarray(k, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64((seed * 1_000_003 + salt * 7919) & 0xFFFFFFFFFFFF))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def event_times(
    t0_s: float, t1_s: float, period_s: float, *, phase_s: float = 0.0, jitter: float = 0.2,
    seed: int = 0, salt: int = 0, keep: float = 1.0, lookback_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Events ``(k, t_s)`` with ``t0_s - lookback_s <= t_s < t1_s``.

    Event ``k`` is at ``phase_s + k * period_s`` plus a hashed jitter of up to
    ``±jitter/2`` periods; a hashed share ``1 - keep`` of events is skipped. ``lookback_s``
    includes earlier events whose sound or motion still reaches into the span.
    """
    lo = int(np.floor((t0_s - lookback_s - phase_s) / period_s)) - 1
    hi = int(np.ceil((t1_s - phase_s) / period_s)) + 1
    k = np.arange(lo, hi + 1)
    t = phase_s + k * period_s + (hash01(seed, k, salt) - 0.5) * jitter * period_s
    mask = (t >= t0_s - lookback_s) & (t < t1_s)
    if keep < 1.0:
        mask &= hash01(seed, k, salt + 1) < keep
    return k[mask], t[mask]


def _rotation(rng: np.random.Generator, max_tilt_rad: float) -> np.ndarray:
    """A random device orientation: any yaw, then a tilt of up to ``max_tilt_rad``."""
    yaw = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0, max_tilt_rad)
    axis = rng.uniform(0, 2 * np.pi)
    cz, sz = np.cos(yaw), np.sin(yaw)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ux, uy = np.cos(axis), np.sin(axis)  # tilt about a horizontal axis (Rodrigues)
    k = np.array([[0.0, 0.0, uy], [0.0, 0.0, -ux], [-uy, ux, 0.0]])
    rt = np.eye(3) + np.sin(tilt) * k + (1 - np.cos(tilt)) * (k @ k)
    return rt @ rz


def _colour(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    c = rng.uniform(lo, hi, 3)
    return (float(c[0]), float(c[1]), float(c[2]))


@dataclass(frozen=True)
class Nuisance:
    """Everything about one segment's rendering that is not the activity itself."""

    seed: int
    phase_s: float
    tempo: float
    # camera and scene
    zoom: float
    shift: tuple[float, float]
    brightness: float
    tint: tuple[float, float, float]
    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    horizon: float
    pixel_noise: float
    subject_x: float
    subject_dir: float
    subject_size: float
    clothes: tuple[float, float, float]
    skin: tuple[float, float, float]
    # depth and thermal
    wall_m: float
    depth_noise: float
    hole_share: float
    ambient_c: float
    body_c: float
    thermal_noise_c: float
    # audio
    gain: float
    pitch: float
    room_noise: float
    hum_hz: float
    hum_level: float
    # imu
    rotation: tuple[tuple[float, float, float], ...]
    imu_amp: float
    acc_noise: float
    gyro_noise: float


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """Draw one segment's nuisance variation from ``rng``."""
    rot = _rotation(rng, np.deg2rad(25.0))
    skin_base = rng.uniform(0.35, 0.9)
    return Nuisance(
        seed=int(rng.integers(0, 2**31)),
        phase_s=float(rng.uniform(0, 10)),
        tempo=float(rng.uniform(0.85, 1.15)),
        zoom=float(rng.uniform(0.8, 1.2)),
        shift=(float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.06, 0.06))),
        brightness=float(rng.uniform(0.6, 1.25)),
        tint=_colour(rng, 0.85, 1.15),
        wall=_colour(rng, 0.25, 0.85),
        floor=_colour(rng, 0.15, 0.6),
        horizon=float(rng.uniform(0.55, 0.72)),
        pixel_noise=float(rng.uniform(0.005, 0.04)),
        subject_x=float(rng.uniform(0.2, 0.8)),
        subject_dir=float(rng.choice([-1.0, 1.0])),
        subject_size=float(rng.uniform(0.8, 1.2)),
        clothes=_colour(rng, 0.05, 0.95),
        skin=(skin_base, skin_base * 0.78, skin_base * 0.62),
        wall_m=float(rng.uniform(3.0, 6.0)),
        depth_noise=float(rng.uniform(0.002, 0.01)),
        hole_share=float(rng.uniform(0.0, 0.03)),
        ambient_c=float(rng.uniform(17.0, 26.0)),
        body_c=float(rng.uniform(31.0, 35.0)),
        thermal_noise_c=float(rng.uniform(0.05, 0.3)),
        gain=float(rng.uniform(0.35, 1.0)),
        pitch=float(rng.uniform(0.85, 1.18)),
        room_noise=float(rng.uniform(0.001, 0.01)),
        hum_hz=float(rng.choice([50.0, 60.0])),
        hum_level=float(rng.uniform(0.0, 0.004)),
        rotation=tuple(tuple(float(v) for v in row) for row in rot),
        imu_amp=float(rng.uniform(0.75, 1.3)),
        acc_noise=float(rng.uniform(0.01, 0.06)),
        gyro_noise=float(rng.uniform(0.003, 0.015)),
    )
