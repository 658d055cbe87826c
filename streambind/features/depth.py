"""Depth: a depth frame to ImageBind's 1×224×224 disparity input.

ImageBind's depth tower was trained on SUN RGB-D converted to *disparity* the way Omnivore
did it (the official repository ships no depth loader; the authors pointed users to
Omnivore's recipe): ``disparity = focal_px * baseline_m / depth_m`` with the Kinect v1
intrinsics that dominate SUN RGB-D (focal length 518.857901 px, baseline 0.075 m), then
Omnivore's ``DepthNorm``: disparity clamped to ``max_disparity`` (75) and divided by it,
which puts every depth beyond ~0.52 m in [0, 1). That is the default here. Inputs from a
different camera can set their own focal length and baseline (disparity then keeps the
meaning "pixels of stereo shift" the model saw), and ``mean``/``std`` allow an extra
standardization, off by default, because published values for it disagree.

Holes (0 mm, NaN, infinite or non-positive depth: the sensor got no return) become
disparity 0, the value of a point infinitely far away, instead of the infinite disparity a
literal division would give (which ``DepthNorm`` would clamp to the *nearest* value).
Resizing uses Pillow's antialiased bilinear filter on float32 (no overshoot at hole edges,
unlike bicubic), shorter side to 224 and a centre crop as for vision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from streambind.errors import FeatureError

from ._checks import BAD_ENCODING, BAD_SHAPE, as_array
from .vision import IMAGE_SIZE, MAX_PIXELS, resize_crop_planes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthParams:
    """Depth -> disparity conversion and normalization (defaults: SUN RGB-D Kinect v1)."""

    focal_px: float = 518.857901
    baseline_m: float = 0.075
    max_disparity: float = 75.0
    mean: float = 0.0
    std: float = 1.0
    # Readings beyond this are treated as holes (beyond any depth sensor's range).
    max_depth_m: float = 100.0


DEFAULT_DEPTH = DepthParams()


def _check_plane(depth: object) -> np.ndarray:
    arr = as_array(depth, "depth")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or min(arr.shape) < 1 or arr.size > MAX_PIXELS:
        raise FeatureError(f"depth: expected an (H, W) frame, got shape {arr.shape}", BAD_SHAPE)
    return arr


def _metres(arr: np.ndarray, encoding: str) -> np.ndarray:
    # Elementwise, so one frame or a stack of frames of one encoding gives the same values.
    if encoding == "u16_mm":
        if arr.dtype.kind == "f" or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
            raise FeatureError("depth: u16_mm expects unsigned 16-bit millimetres", BAD_SHAPE)
        metres = arr.astype(np.float32) / 1000.0
    elif encoding == "f32_m":
        metres = arr.astype(np.float32, copy=True)
    else:
        raise FeatureError(f"depth: unknown encoding {encoding!r}", BAD_ENCODING)
    with np.errstate(invalid="ignore"):
        holes = ~np.isfinite(metres) | (metres <= 0)
    metres[holes] = np.nan
    return metres


def depth_to_metres(depth: object, encoding: str) -> np.ndarray:
    """(H, W) depth in ``u16_mm`` or ``f32_m`` -> float32 metres with holes as NaN."""
    return _metres(_check_plane(depth), encoding)


def _scaled_disparity(metres: np.ndarray, params: DepthParams) -> np.ndarray:
    # min(disparity, max_disparity) / max_disparity, holes and far readings 0; elementwise.
    with np.errstate(invalid="ignore", divide="ignore"):
        disparity = (params.focal_px * params.baseline_m) / metres
        disparity = np.where(
            np.isnan(metres) | (metres > params.max_depth_m), 0.0, disparity
        ).astype(np.float32)
    return (np.minimum(disparity, params.max_disparity) / params.max_disparity).astype(np.float32)


def depth_frames(
    frames: Sequence[tuple[object, str]], *, params: DepthParams = DEFAULT_DEPTH
) -> torch.Tensor:
    """Depth frames, as ``(frame, encoding)`` pairs -> Tensor[B, 1, 224, 224].

    Each row equals :func:`depth_frame` of its frame. The frames of one size and encoding
    are converted as one stack and resized in one call (the GIL is taken a few times per
    batch, not per frame).
    """
    if params.focal_px <= 0 or params.baseline_m <= 0 or params.max_disparity <= 0:
        raise FeatureError("depth: focal length, baseline and max disparity must be positive")
    if params.std <= 0:
        raise FeatureError("depth: std must be positive")
    if not frames:
        raise FeatureError("depth: expected at least one frame", BAD_SHAPE)
    groups: dict[tuple[object, ...], list[tuple[int, np.ndarray]]] = {}
    for i, (frame, encoding) in enumerate(frames):
        plane = _check_plane(frame)
        groups.setdefault((plane.shape, plane.dtype.str, encoding), []).append((i, plane))
    out = torch.empty(len(frames), 1, IMAGE_SIZE, IMAGE_SIZE)
    for (_, _, encoding), members in groups.items():
        stack = np.stack([plane for _, plane in members])
        scaled = _scaled_disparity(_metres(stack, encoding), params)
        planes = torch.from_numpy(resize_crop_planes(scaled, "bilinear"))
        out[[i for i, _ in members], 0] = planes
    return (out.clamp_(0.0, 1.0) - params.mean) / params.std


def depth_frame(
    depth: object, encoding: str, *, params: DepthParams = DEFAULT_DEPTH
) -> torch.Tensor:
    """Depth frame (``u16_mm`` uint16 mm or ``f32_m`` float32 m) -> Tensor[1, 224, 224].

    Output: ``(min(disparity, max_disparity) / max_disparity - mean) / std`` with
    ``disparity = focal_px * baseline_m / depth``; holes (0, NaN, inf, <= 0) give disparity 0.
    """
    return depth_frames([(depth, encoding)], params=params)[0]


__all__ = ["DEFAULT_DEPTH", "DepthParams", "depth_frame", "depth_frames", "depth_to_metres"]
