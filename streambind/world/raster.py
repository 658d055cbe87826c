"""Rasterize a scene (a list of shapes) into camera, depth and thermal frames.

Shapes live in scene coordinates: ``y`` from 0 (top) to 1 (bottom) of a 4:3 view, ``x``
from 0 (left) to 1 (right), sizes in units of the view's height. The camera nuisance
(zoom, shift) maps the view onto a frame of any size, so one scene renders at any
resolution. Each shape carries a colour, a distance (metres) and a temperature (°C), so the
three frame modalities show the same scene: the camera paints far to near, depth keeps
the nearest surface, thermal paints temperatures and blurs them like a thermal lens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streambind.world.nuisance import Nuisance, hash01

ASPECT = 4.0 / 3.0
CAMERA_HEIGHT_M = 1.2


@dataclass(frozen=True, slots=True)
class Shape:
    """A filled ellipse (``rect=False``) or rectangle, rotated by ``angle`` radians."""

    cx: float
    cy: float
    rx: float
    ry: float
    colour: tuple[float, float, float]
    depth_m: float
    temp_c: float
    angle: float = 0.0
    rect: bool = False
    alpha: float = 1.0


def eye_row(n: Nuisance) -> float:
    """The image row (scene units) of the camera's eye level."""
    return n.horizon - CAMERA_HEIGHT_M / n.wall_m


def floor_row(n: Nuisance, depth_m: float) -> float:
    """The image row where the floor is ``depth_m`` away."""
    return eye_row(n) + CAMERA_HEIGHT_M / max(depth_m, 0.3)


def _transform(n: Nuisance, height: int, width: int) -> tuple[float, float, float]:
    """Pixels per scene unit and the pixel position of the scene origin."""
    scale = min(width / ASPECT, float(height)) * n.zoom
    ox = width / 2 + (n.shift[0] - ASPECT / 2) * scale
    oy = height / 2 + (n.shift[1] - 0.5) * scale
    return scale, ox, oy


def _mask(shape: Shape, scale: float, ox: float, oy: float, height: int, width: int
          ) -> tuple[slice, slice, np.ndarray] | None:
    """The shape's pixel mask within its bounding box, or None when off-frame."""
    cx = ox + shape.cx * ASPECT * scale
    cy = oy + shape.cy * scale
    rx, ry = max(shape.rx * scale, 0.5), max(shape.ry * scale, 0.5)
    ca, sa = np.cos(shape.angle), np.sin(shape.angle)
    ext_x = abs(rx * ca) + abs(ry * sa)
    ext_y = abs(rx * sa) + abs(ry * ca)
    x0, x1 = max(int(cx - ext_x), 0), min(int(cx + ext_x) + 2, width)
    y0, y1 = max(int(cy - ext_y), 0), min(int(cy + ext_y) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    u = (dx * ca + dy * sa) / rx
    v = (-dx * sa + dy * ca) / ry
    if shape.rect:
        mask = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    else:
        mask = u * u + v * v <= 1
    if not mask.any():
        return None
    return slice(y0, y1), slice(x0, x1), mask


def _rows(n: Nuisance, height: int, width: int) -> np.ndarray:
    """Scene row of each pixel row, (H,)."""
    scale, _, oy = _transform(n, height, width)
    return (np.arange(height, dtype=np.float32) + 0.5 - oy) / scale


def _ordered(shapes: list[Shape]) -> list[Shape]:
    return sorted(shapes, key=lambda s: -s.depth_m)  # far to near (painter's order)


def render_rgb(shapes: list[Shape], n: Nuisance, rng: np.random.Generator,
               height: int, width: int, light: float = 1.0) -> np.ndarray:
    """The camera frame, (H, W, 3) uint8."""
    rows = _rows(n, height, width)
    wall = np.asarray(n.wall, np.float32)
    floor = np.asarray(n.floor, np.float32)
    img = np.empty((height, width, 3), np.float32)
    below = rows >= n.horizon
    # A soft vertical light gradient on the wall, the floor darker far away.
    img[~below] = wall * (0.8 + 0.25 * np.clip(rows[~below], 0, 1))[:, None, None]
    img[below] = floor * (0.7 + 0.4 * np.clip(rows[below] - n.horizon, 0, 1))[:, None, None]
    scale, ox, oy = _transform(n, height, width)
    for shape in _ordered(shapes):
        hit = _mask(shape, scale, ox, oy, height, width)
        if hit is None:
            continue
        ys, xs, mask = hit
        region = img[ys, xs]
        colour = np.asarray(shape.colour, np.float32)
        region[mask] = region[mask] * (1 - shape.alpha) + colour * shape.alpha
    gain = n.brightness * light * np.asarray(n.tint, np.float32)
    # Lighting falls off from one side (its side is part of the nuisance seed).
    side = 1.0 if hash01(n.seed, 0, 11) < 0.5 else -1.0
    ramp = 1.0 + 0.15 * side * np.linspace(-1, 1, width, dtype=np.float32)
    img = img * gain * ramp[None, :, None]
    img += rng.normal(0, n.pixel_noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_depth(shapes: list[Shape], n: Nuisance, rng: np.random.Generator,
                 height: int, width: int) -> np.ndarray:
    """The depth frame, (H, W) uint16 millimetres; 0 marks a hole (no return)."""
    rows = _rows(n, height, width)
    with np.errstate(divide="ignore"):
        floor_m = CAMERA_HEIGHT_M / np.maximum(rows - eye_row(n), 1e-3)
    column = np.where(rows >= n.horizon, np.minimum(floor_m, n.wall_m), n.wall_m)
    depth = np.repeat(column[:, None], width, axis=1).astype(np.float32)
    scale, ox, oy = _transform(n, height, width)
    for shape in shapes:
        if shape.alpha < 0.5:
            continue  # glass and light do not return a depth reading
        hit = _mask(shape, scale, ox, oy, height, width)
        if hit is None:
            continue
        ys, xs, mask = hit
        region = depth[ys, xs]
        region[mask] = np.minimum(region[mask], shape.depth_m)
    depth *= 1 + rng.normal(0, n.depth_noise, depth.shape).astype(np.float32) * depth / 2
    mm = np.clip(depth * 1000, 1, 65535).astype(np.uint16)
    if n.hole_share > 0:
        mm[rng.random(mm.shape) < n.hole_share] = 0
    return mm


def _blur(img: np.ndarray) -> np.ndarray:
    """A 3x3 box blur (thermal optics are soft)."""
    pad = np.pad(img, 1, mode="edge")
    rows = pad[:-2] + pad[1:-1] + pad[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def render_thermal(shapes: list[Shape], n: Nuisance, rng: np.random.Generator,
                   height: int, width: int) -> np.ndarray:
    """The thermal frame, (H, W) float32 degrees Celsius."""
    rows = _rows(n, height, width)
    column = np.where(rows >= n.horizon, n.ambient_c - 1.5, n.ambient_c + 0.8 * (0.5 - rows))
    temp = np.repeat(column[:, None], width, axis=1).astype(np.float32)
    scale, ox, oy = _transform(n, height, width)
    for shape in _ordered(shapes):
        hit = _mask(shape, scale, ox, oy, height, width)
        if hit is None:
            continue
        ys, xs, mask = hit
        region = temp[ys, xs]
        a = min(1.0, shape.alpha * 1.5)
        region[mask] = region[mask] * (1 - a) + shape.temp_c * a
    temp = _blur(temp)
    temp += rng.normal(0, n.thermal_noise_c, temp.shape).astype(np.float32)
    return temp.astype(np.float32)


def celsius_to_u16(temp_c: np.ndarray) -> np.ndarray:
    """Degrees Celsius to the ``u16`` thermal encoding used here: centikelvin."""
    return np.clip((np.asarray(temp_c, np.float64) + 273.15) * 100, 0, 65535).astype(np.uint16)
