"""Pillow's resize of float32 planes (mode ``F``), bit for bit, for many planes in one call.

Depth and thermal planes are resized as Pillow resizes a mode ``F`` image: weights from
``precompute_coeffs`` in double precision (:func:`.resize.pillow_coefficients`), each
output pixel a sequential double sum of ``pixel * weight`` stored as float32, first along x
(only the source rows the crop reads), then along y. Only the centre crop is computed.

Why not Pillow itself: a batch of planes is one call of the compiled kernel, which releases
the GIL once. One Pillow call per plane, with the numpy steps around it, retakes the GIL a
dozen times per frame, and under contention (the consumer and decode threads run Python)
each retake can wait a whole switch interval: measured 10-100x slower than alone.

The tests hold the output to Pillow's own, bit for bit, over many sizes and both filters.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from streambind.errors import FeatureError

from ._checks import BAD_SHAPE
from .resize import pillow_coefficients

AxisCoefficients = tuple[np.ndarray, np.ndarray, np.ndarray]  # first, count, weights


@lru_cache(maxsize=64)
def _axis(in_size: int, out_size: int, first_out: int, n_out: int,
          filter_name: str) -> AxisCoefficients | None:
    # None: the axis keeps its size, and Pillow skips that pass (no weights touch it).
    if in_size == out_size:
        return None
    return pillow_coefficients(in_size, out_size, first_out, n_out, filter_name)


@numba.njit(nogil=True, cache=True)
def _resize_crop_planes(planes, x_first, x_count, x_w, y_first, y_count, y_w, out):
    # planes (N, H, W) float32 -> out (N, S, S) float32. x_* cover the S cropped output
    # columns, y_* the S cropped output rows (first taps relative to the source).
    n, size = planes.shape[0], out.shape[1]
    row0 = y_first[0]
    row1 = y_first[size - 1] + y_count[size - 1]
    rows = np.empty((row1 - row0, size), np.float32)
    acc = np.empty(size, np.float64)
    for i in range(n):
        plane = planes[i]
        for r in range(row0, row1):  # horizontal pass over the rows the vertical one reads
            src = plane[r]
            for o in range(size):
                ss = 0.0
                first = x_first[o]
                for t in range(x_count[o]):
                    ss += np.float64(src[first + t]) * x_w[o, t]
                rows[r - row0, o] = np.float32(ss)
        for o in range(size):  # vertical pass; per pixel the same sequential tap order
            acc[:] = 0.0
            first = y_first[o] - row0
            for t in range(y_count[o]):
                k = y_w[o, t]
                src = rows[first + t]
                for x in range(size):
                    acc[x] += np.float64(src[x]) * k
            for x in range(size):
                out[i, o, x] = np.float32(acc[x])


def _identity(first_out: int, n_out: int) -> AxisCoefficients:
    # An axis Pillow does not resample: output pixel o copies input first_out + o. A weight
    # of exactly 1 reproduces the copy (x * 1.0 is x, also for inf and NaN).
    first = np.arange(first_out, first_out + n_out, dtype=np.int32)
    return first, np.ones(n_out, np.int32), np.ones((n_out, 1))


def resize_crop_planes(
    planes: np.ndarray,
    new_size: tuple[int, int],
    crop: tuple[int, int],
    size: int,
    filter_name: str,
) -> np.ndarray:
    """``Image.fromarray(plane).resize(new_size, filter).crop(box)`` for every plane.

    ``planes`` is (N, H, W) float32, ``new_size`` the (width, height) of the resize,
    ``crop`` the (left, top) of the ``size`` x ``size`` crop (inside the resized plane),
    ``filter_name`` ``"bilinear"`` or ``"bicubic"``. Returns (N, size, size) float32, equal
    bit for bit to Pillow's mode ``F`` resize. Releases the GIL for the whole batch.
    """
    if planes.ndim != 3 or planes.dtype != np.float32:
        raise FeatureError(f"resize: expected float32 (N, H, W), got {planes.shape}", BAD_SHAPE)
    height, width = planes.shape[1:]
    (new_w, new_h), (left, top) = new_size, crop
    if not (0 <= left <= new_w - size and 0 <= top <= new_h - size):
        raise FeatureError(f"resize: crop {crop} of {size} outside {new_size}", BAD_SHAPE)
    xs = _axis(width, new_w, left, size, filter_name) or _identity(left, size)
    ys = _axis(height, new_h, top, size, filter_name) or _identity(top, size)
    out = np.empty((planes.shape[0], size, size), np.float32)
    _resize_crop_planes(np.ascontiguousarray(planes), *xs, *ys, out)
    return out


__all__ = ["resize_crop_planes"]
