"""Public renderers: one modality's raw data at a moment or over a span of an activity.

Two levels. The moment/span renderers (:func:`render_frame`, :func:`render_depth`,
:func:`render_thermal`, :func:`render_audio`, :func:`render_imu`) take a segment's
:class:`~streambind.world.nuisance.Nuisance` and a time into the segment; the simulator
calls them chunk by chunk. :func:`render_windows` makes one training example: the raw data
of every requested modality over the same moment of one scene (time-aligned, so the
modalities pair up as ImageBind's binding needs), each shaped as the featurizers take it.

Raw formats (what the sensors send): camera RGB uint8 (H, W, 3); audio mono float32 in
[-1, 1]; depth uint16 millimetres (``u16_mm``, 0 = hole); thermal float32 degrees Celsius
(``f32_c``); IMU float32 (N, 6) acc x,y,z (m/s²), gyro x,y,z (rad/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streambind.world.activities import activity
from streambind.world.motion import render_imu
from streambind.world.nuisance import Nuisance, sample_nuisance
from streambind.world.raster import render_depth as _depth
from streambind.world.raster import render_rgb
from streambind.world.raster import render_thermal as _thermal
from streambind.world.scene import layout
from streambind.world.sound import render_audio

MODALITIES: tuple[str, ...] = ("vision", "audio", "depth", "thermal", "imu")
WINDOW_S: dict[str, float] = {"vision": 2.0, "audio": 2.0, "depth": 2.0, "thermal": 2.0,
                              "imu": 5.0}
ENCODINGS: dict[str, str] = {"vision": "rgb8", "audio": "f32le", "depth": "u16_mm",
                             "thermal": "f32_c", "imu": "f32"}
FRAME_SIZE = (120, 160)  # (H, W) camera
SENSOR_SIZE = (60, 80)  # (H, W) depth and thermal


def render_frame(name: str, t_s: float, n: Nuisance, rng: np.random.Generator,
                 height: int = FRAME_SIZE[0], width: int = FRAME_SIZE[1]) -> np.ndarray:
    """Camera frame of ``name`` at ``t_s`` into the segment: (H, W, 3) uint8."""
    shapes, light = layout(name, t_s, n)
    return render_rgb(shapes, n, rng, height, width, light)


def render_depth(name: str, t_s: float, n: Nuisance, rng: np.random.Generator,
                 height: int = SENSOR_SIZE[0], width: int = SENSOR_SIZE[1]) -> np.ndarray:
    """Depth frame: (H, W) uint16 millimetres (0 = no return)."""
    shapes, _ = layout(name, t_s, n)
    return _depth(shapes, n, rng, height, width)


def render_thermal(name: str, t_s: float, n: Nuisance, rng: np.random.Generator,
                   height: int = SENSOR_SIZE[0], width: int = SENSOR_SIZE[1]) -> np.ndarray:
    """Thermal frame: (H, W) float32 degrees Celsius."""
    shapes, _ = layout(name, t_s, n)
    return _thermal(shapes, n, rng, height, width)


@dataclass(frozen=True)
class RawWindow:
    """One modality's raw data for one window of an activity.

    ``data``: vision a list of frames (first and last of the clip, RGB uint8); audio (N,)
    float32 with ``sample_rate``; depth (H, W) uint16 mm; thermal (H, W) float32 °C; IMU
    (N, 6) float32 with ``sample_rate``. ``start_s`` is the window's start in the segment.
    """

    modality: str
    activity: str
    data: Any
    encoding: str
    start_s: float
    sample_rate: float | None = None


def render_window(modality: str, name: str, rng: np.random.Generator, **kwargs: Any
                  ) -> RawWindow:
    """One window of one modality with fresh nuisance from ``rng`` (see :func:`render_windows`)."""
    return render_windows(name, rng, (modality,), **kwargs)[modality]


def render_windows(
    name: str, rng: np.random.Generator, modalities: Sequence[str] = MODALITIES, *,
    nuisance: Nuisance | None = None, centre_s: float | None = None,
    frame_size: tuple[int, int] = FRAME_SIZE, sensor_size: tuple[int, int] = SENSOR_SIZE,
    audio_rate: int = 16_000, imu_rate: int = 400,
) -> dict[str, RawWindow]:
    """Time-aligned windows of every modality of one scene of activity ``name``.

    All windows are centred on the same moment ``centre_s`` (default: random in the first
    minute of a segment) of one nuisance draw (default: fresh from ``rng``), with the
    lengths of ``WINDOW_S`` (vision, audio, depth, thermal 2 s; IMU 5 s). Deterministic for
    a given ``rng`` state.
    """
    act = activity(name).name
    n = nuisance if nuisance is not None else sample_nuisance(rng)
    centre = float(centre_s) if centre_s is not None else float(rng.uniform(3.0, 60.0))
    out: dict[str, RawWindow] = {}
    for modality in modalities:
        length = WINDOW_S[modality]
        start = centre - length / 2
        enc = ENCODINGS[modality]
        if modality == "vision":
            frames = [render_frame(act, t, n, rng, *frame_size) for t in (start, start + 1.75)]
            out[modality] = RawWindow(modality, act, frames, enc, start)
        elif modality == "depth":
            out[modality] = RawWindow(modality, act, render_depth(act, centre, n, rng,
                                                                  *sensor_size), enc, start)
        elif modality == "thermal":
            out[modality] = RawWindow(modality, act, render_thermal(act, centre, n, rng,
                                                                    *sensor_size), enc, start)
        elif modality == "audio":
            samples = render_audio(act, start, int(length * audio_rate), audio_rate, n, rng)
            out[modality] = RawWindow(modality, act, samples, enc, start, float(audio_rate))
        elif modality == "imu":
            rows = render_imu(act, start, int(length * imu_rate), imu_rate, n, rng)
            out[modality] = RawWindow(modality, act, rows, enc, start, float(imu_rate))
        else:
            raise KeyError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return out


__all__ = ["ENCODINGS", "FRAME_SIZE", "MODALITIES", "SENSOR_SIZE", "WINDOW_S", "RawWindow",
           "render_audio", "render_depth", "render_frame", "render_imu", "render_thermal",
           "render_window", "render_windows"]
