"""Thermal: a thermal frame to ImageBind's 1×224×224 input.

ImageBind's thermal tower was trained on LLVIP, whose infrared frames are 8-bit images
already auto-gained by the camera (each frame spans its own hot-to-cold range) and were fed
like grayscale images: shorter side to 224 (bicubic), centre crop, ``ToTensor`` (/255), no
mean/std. The normalization decides how radiometric data is mapped into that [0, 1] range,
and users report that it changes zero-shot results, so it is a parameter:

- ``"auto"`` (default): ``u8`` frames are divided by 255 (they already look like LLVIP);
  ``u16`` and ``f32_c`` frames are min-max scaled per frame, which imitates the camera's
  auto-gain that LLVIP was recorded with.
- ``"minmax"``: per-frame min-max for every encoding (a constant frame becomes 0).
- ``"fixed"``: ``(value - lo) / (hi - lo)`` clipped to [0, 1] with ``value_range=(lo, hi)``;
  defaults: ``u8`` (0, 255), ``u16`` (0, 65535), ``f32_c`` (-20, 60) °C. Stable across frames
  (a person keeps the same brightness when a hot engine enters the view), at the price of
  less contrast than LLVIP had.

``u8`` frames under ``"auto"`` are resized by Pillow's 8-bit path, exactly like a grayscale
PIL image; everything else is resized as float32 and clipped to [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from streambind.errors import FeatureError

from ._checks import BAD_ENCODING, BAD_SHAPE, as_array, require_finite
from .vision import IMAGE_SIZE, MAX_PIXELS, resize_crop_plane, resize_crop_planes

log = logging.getLogger(__name__)

THERMAL_NORMALIZATIONS = ("auto", "minmax", "fixed")
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "u8": (0.0, 255.0),
    "u16": (0.0, 65535.0),
    "f32_c": (-20.0, 60.0),
}


def _check_plane(img: object, encoding: str) -> np.ndarray:
    if encoding not in DEFAULT_RANGES:
        raise FeatureError(f"thermal: unknown encoding {encoding!r}", BAD_ENCODING)
    arr = as_array(img, "thermal")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or min(arr.shape) < 1 or arr.size > MAX_PIXELS:
        raise FeatureError(f"thermal: expected an (H, W) frame, got {arr.shape}", BAD_SHAPE)
    return arr


def _check_values(arr: np.ndarray, encoding: str) -> np.ndarray:
    require_finite(arr, "thermal")
    if encoding != "f32_c":
        hi = DEFAULT_RANGES[encoding][1]
        if arr.dtype.kind == "f" or arr.min() < 0 or arr.max() > hi:
            raise FeatureError(f"thermal: {encoding} expects integers in [0, {hi:.0f}]")
    return arr


def _scale(arr: np.ndarray, encoding: str, normalization: str,
           value_range: tuple[float, float] | None) -> np.ndarray:
    # (..., H, W) checked frames of one encoding -> float32 [0, 1], each frame on its own.
    if normalization not in THERMAL_NORMALIZATIONS:
        raise FeatureError(f"thermal: unknown normalization {normalization!r}")
    values = arr.astype(np.float32)
    if normalization == "fixed" or (normalization == "auto" and encoding == "u8"):
        lo, hi = value_range if value_range is not None else DEFAULT_RANGES[encoding]
        if not np.isfinite([lo, hi]).all() or hi <= lo:
            raise FeatureError(f"thermal: value_range {value_range!r} must have lo < hi")
        return np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    low = values.min(axis=(-2, -1), keepdims=True)
    high = values.max(axis=(-2, -1), keepdims=True)
    # The span in double precision, then float32: what `values / (hi - lo)` does with
    # Python floats; a flat frame carries no contrast and becomes 0.
    span = (high.astype(np.float64) - low.astype(np.float64)).astype(np.float32)
    return np.divide(values - low, span, out=np.zeros_like(values), where=high > low)


def thermal_scale(
    img: object,
    encoding: str,
    *,
    normalization: str = "auto",
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map a thermal frame to float32 [0, 1] at its own resolution (see module docstring)."""
    arr = _check_values(_check_plane(img, encoding), encoding)
    return _scale(arr, encoding, normalization, value_range)


def thermal_frames(
    frames: Sequence[tuple[object, str]],
    *,
    normalization: str = "auto",
    value_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Thermal frames, as ``(frame, encoding)`` pairs -> Tensor[B, 1, 224, 224] in [0, 1].

    Each row equals :func:`thermal_frame` of its frame. The frames of one size and encoding
    are scaled as one stack and resized in one call (the GIL is taken a few times per batch,
    not per frame); ``u8`` frames under ``"auto"`` take Pillow's 8-bit path one by one.
    """
    if not frames:
        raise FeatureError("thermal: expected at least one frame", BAD_SHAPE)
    out = torch.empty(len(frames), 1, IMAGE_SIZE, IMAGE_SIZE)
    groups: dict[tuple[object, ...], list[tuple[int, np.ndarray]]] = {}
    for i, (frame, encoding) in enumerate(frames):
        plane = _check_plane(frame, encoding)
        if encoding == "u8" and normalization == "auto" and value_range is None:
            gray = _check_values(plane, encoding).astype(np.uint8)
            out[i, 0] = torch.from_numpy(resize_crop_plane(gray).astype(np.float32) / 255.0)
        else:
            groups.setdefault((plane.shape, plane.dtype.str, encoding), []).append((i, plane))
    for (_, _, encoding), members in groups.items():
        stack = _check_values(np.stack([plane for _, plane in members]), encoding)
        scaled = _scale(stack, encoding, normalization, value_range)
        planes = np.clip(resize_crop_planes(scaled, "bicubic"), 0.0, 1.0)
        out[[i for i, _ in members], 0] = torch.from_numpy(planes)
    return out


def thermal_frame(
    img: object,
    encoding: str,
    *,
    normalization: str = "auto",
    value_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Thermal frame (``u8``, ``u16`` or ``f32_c`` (H, W)) -> Tensor[1, 224, 224] in [0, 1].

    ``normalization`` is ``"auto"``, ``"minmax"`` or ``"fixed"`` (with ``value_range``);
    see the module docstring for what each does and why ``"auto"`` is the default.
    """
    return thermal_frames([(img, encoding)], normalization=normalization,
                          value_range=value_range)[0]


__all__ = ["DEFAULT_RANGES", "THERMAL_NORMALIZATIONS", "thermal_frame", "thermal_frames",
           "thermal_scale"]
