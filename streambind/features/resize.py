"""Pillow's bicubic resize of 8-bit RGB, bit for bit, computing only the centre crop.

The reference resizes a PIL image (shorter side to 224) and then crops the centre. Pillow
works in fixed point: per output pixel it computes bicubic weights in double precision,
normalizes them, rounds them to integers with 22 fractional bits, sums ``pixel * weight``
in 32-bit integers and clips the result to uint8, first along x, then along y. Any float
interpolation differs from that in the last bit of many pixels, so this module performs the
same integer arithmetic, with weights computed by the same formulas in the same order
(:func:`bicubic_weights`). Two things make it faster than calling Pillow, and neither
changes a pixel:

- Only the 224 output columns and rows that survive the crop are computed (Pillow's ``box``
  argument cannot do this exactly: it passes the box through float32, which moves weights).
- The tap loops run over contiguous memory, so the compiler vectorizes them (numba, no
  Python in the loops), and the normalization to CLIP's mean and std is fused into the last
  pass.

The tests hold the output to Pillow's own, pixel for pixel, over many frame sizes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

from streambind.errors import FeatureError

from ._checks import BAD_SHAPE

# Pillow's ImagingResample: 32 - 8 (pixel) - 2 (headroom for weights above 1) bits.
PRECISION_BITS = 22
_HALF = 1 << (PRECISION_BITS - 1)
_CLIP_HIGH = 1 << (PRECISION_BITS + 8)
# Source rows transposed together in the horizontal pass: 32 rows x 3 channels of int32
# accumulators fill a few vector registers; measured fastest among 8, 16, 32 and 64.
_ROWS_PER_BLOCK = 32
_BICUBIC_A = -0.5  # Pillow's bicubic kernel parameter


class AxisWeights(NamedTuple):
    """Fixed-point resampling weights of one axis for a run of output pixels.

    ``first[o]``: first source pixel of output ``o``; ``count[o]``: how many source pixels
    it reads; ``weights[o, :count[o]]``: their int32 weights (sum about ``2**22``).
    """

    first: np.ndarray  # (N,) int32
    count: np.ndarray  # (N,) int32
    weights: np.ndarray  # (N, K) int32


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Pillow's bicubic_filter, operation for operation (a = -0.5), so doubles round alike.
    x = np.abs(x)
    out = np.zeros_like(x)
    inner = x < 1.0
    outer = ~inner & (x < 2.0)
    xi, xo = x[inner], x[outer]
    out[inner] = ((_BICUBIC_A + 2.0) * xi - (_BICUBIC_A + 3.0)) * xi * xi + 1
    out[outer] = (((xo - 5) * xo + 8) * xo - 4) * _BICUBIC_A
    return out


def _bilinear(x: np.ndarray) -> np.ndarray:
    # Pillow's bilinear_filter (a triangle of support 1).
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


# Pillow's filters by name: (filter function, support in input pixels).
FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


def pillow_coefficients(
    in_size: int, out_size: int, first_out: int, n_out: int, filter_name: str = "bicubic"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` for outputs ``first_out .. first_out + n_out - 1`` of
    an ``in_size -> out_size`` resize: (first source pixel, tap count, normalized float64
    weights (n_out, K)), computed by the same formulas in the same order as Pillow."""
    fn, filter_support = FILTERS[filter_name]
    scale = float(in_size) / out_size
    filter_scale = max(scale, 1.0)
    support = filter_support * filter_scale  # stretched on downscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(first_out, first_out + n_out, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero; Pillow relies on that for its rounding.
    lo = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    hi = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = hi - lo
    taps = np.arange(ksize)
    inverse_scale = 1.0 / filter_scale  # Pillow multiplies by the reciprocal; so must we
    w = fn(((taps + lo[:, None]).astype(np.float64) - center[:, None] + 0.5) * inverse_scale)
    w[taps >= count[:, None]] = 0.0
    total = np.zeros(n_out)
    for t in range(ksize):  # sequential sum: the order Pillow adds in (np.sum pairs terms)
        total = total + w[:, t]
    nonzero = total != 0.0
    w[nonzero] /= total[nonzero, None]
    return lo.astype(np.int32), count.astype(np.int32), w


def bicubic_weights(in_size: int, out_size: int, first_out: int, n_out: int) -> AxisWeights:
    """Pillow's bicubic weights for outputs ``first_out .. first_out + n_out - 1`` of an
    ``in_size -> out_size`` resize (``precompute_coeffs`` and ``normalize_coeffs_8bpc``)."""
    lo, count, w = pillow_coefficients(in_size, out_size, first_out, n_out, "bicubic")
    scaled = w * (1 << PRECISION_BITS)
    fixed = np.trunc(np.where(w < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    return AxisWeights(lo, count, fixed)


@lru_cache(maxsize=64)
def crop_weights(
    width: int, height: int, new_w: int, new_h: int, left: int, top: int, size: int
) -> tuple[AxisWeights, AxisWeights]:
    """Weights of the ``size`` x ``size`` crop at (left, top) of a (width, height) ->
    (new_w, new_h) resize; cached, since a camera sends one frame size."""
    return (
        bicubic_weights(width, new_w, left, size),
        bicubic_weights(height, new_h, top, size),
    )


@numba.njit(nogil=True, cache=True)
def _clip8(acc):
    # Pillow's clip8: the sum carries 22 fractional bits.
    if acc <= 0:
        return np.uint8(0)
    if acc >= _CLIP_HIGH:
        return np.uint8(255)
    return np.uint8(acc >> PRECISION_BITS)


@numba.njit(nogil=True, cache=True, inline="always")
def _tap_sum(acc, src, first, count, weights):
    # acc[j] = 2**21 + sum_t weights[t] * src[first + t, j]: Pillow's fixed-point sum, with
    # the taps over whole contiguous rows so that the j loop vectorizes.
    acc[:] = _HALF
    for t in range(count):
        k = weights[t]
        row = src[first + t]
        for j in range(acc.shape[0]):
            acc[j] += np.int32(row[j]) * k


@numba.njit(nogil=True, cache=True)
def _horizontal(frame, xw_first, xw_count, xw, row0, row1, out):
    # frame (H, W, 3) uint8 -> out (row1 - row0, S * 3) uint8: rows row0..row1 resampled
    # along x. Each block of rows is transposed into `slab` (source column major) so that
    # the tap loop adds whole contiguous slab rows.
    n_out = xw_first.shape[0]
    col0 = xw_first[0]
    n_cols = xw_first[n_out - 1] + xw_count[n_out - 1] - col0
    width = _ROWS_PER_BLOCK * 3
    slab = np.zeros((n_cols, width), np.uint8)  # (columns, rows * 3)
    acc = np.empty(width, np.int32)
    for block in range(row0, row1, _ROWS_PER_BLOCK):
        n_rows = min(_ROWS_PER_BLOCK, row1 - block)
        for r in range(n_rows):
            src = frame[block + r]
            for x in range(n_cols):
                for c in range(3):
                    slab[x, r * 3 + c] = src[col0 + x, c]
        for o in range(n_out):
            _tap_sum(acc, slab, xw_first[o] - col0, xw_count[o], xw[o])
            for r in range(n_rows):
                dst = out[block - row0 + r]
                for c in range(3):
                    dst[o * 3 + c] = _clip8(acc[r * 3 + c])


@numba.njit(nogil=True, cache=True)
def _vertical_normalized(rows, yw_first, yw_count, yw, row0, scale, bias, out):
    # rows (R, S * 3) uint8 -> out (3, S, S) float32: resampled along y, then
    # uint8 * scale[c] + bias[c] per channel, as float32 arithmetic.
    size = out.shape[1]
    width = size * 3
    acc = np.empty(width, np.int32)
    pixels = np.empty(width, np.uint8)
    for o in range(size):
        _tap_sum(acc, rows, yw_first[o] - row0, yw_count[o], yw[o])
        for j in range(width):
            pixels[j] = _clip8(acc[j])
        for c in range(3):
            s, b = scale[c], bias[c]
            dst = out[c, o]
            for x in range(size):
                dst[x] = np.float32(pixels[x * 3 + c]) * s + b


@numba.njit(nogil=True, cache=True)
def _resize_crop_normalize(frame, xw_first, xw_count, xw, yw_first, yw_count, yw, scale, bias, out):
    # Only the source rows the cropped output rows read go through the horizontal pass.
    size = yw_first.shape[0]
    row0 = yw_first[0]
    row1 = yw_first[size - 1] + yw_count[size - 1]
    rows = np.empty((row1 - row0, xw_first.shape[0] * 3), np.uint8)
    _horizontal(frame, xw_first, xw_count, xw, row0, row1, rows)
    _vertical_normalized(rows, yw_first, yw_count, yw, row0, scale, bias, out)


@numba.njit(nogil=True, cache=True)
def _resize_crop_normalize_frames(frames, clip, step, xw_first, xw_count, xw, yw_first, yw_count,
                                  yw, scale, bias, out):
    # frames (N, H, W, 3) -> out (B, 3, T, S, S): frame n into out[clip[n], :, step[n]]. One
    # call for a whole batch, so the GIL is released once, not once per frame.
    for n in range(frames.shape[0]):
        _resize_crop_normalize(frames[n], xw_first, xw_count, xw, yw_first, yw_count, yw,
                               scale, bias, out[clip[n], :, step[n]])


def resize_crop_normalize_frames_into(
    frames: np.ndarray,
    slots: tuple[np.ndarray, np.ndarray],
    new_size: tuple[int, int],
    crop: tuple[int, int],
    scale: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`resize_crop_normalize_into` for N frames of one size at once.

    ``frames`` is (N, H, W, 3) uint8; ``out`` is (B, 3, T, S, S) float32 and frame ``n`` is
    written to ``out[slots[0][n], :, slots[1][n]]`` (clip, time step). Same pixels as one
    call per frame; releases the GIL once for the whole batch.
    """
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise FeatureError(f"resize: expected uint8 (N, H, W, 3), got {frames.shape}", BAD_SHAPE)
    clip, step = (np.asarray(s, dtype=np.int64) for s in slots)
    size = out.shape[3]
    (new_w, new_h), (left, top) = new_size, crop
    # The kernel does not check bounds: slots or a crop outside their arrays must stop here.
    if (out.ndim != 5 or out.shape[1] != 3 or out.shape[3:] != (size, size)
            or clip.shape != (frames.shape[0],) or step.shape != clip.shape
            or (clip.size and (clip.min() < 0 or clip.max() >= out.shape[0]
                               or step.min() < 0 or step.max() >= out.shape[2]))
            or not (0 <= left <= new_w - size and 0 <= top <= new_h - size)):
        raise FeatureError(f"resize: {frames.shape[0]} frames do not fit {out.shape} at crop "
                           f"{crop} of {new_size}", BAD_SHAPE)
    height, width = frames.shape[1:3]
    xw, yw = crop_weights(width, height, new_w, new_h, left, top, size)
    _resize_crop_normalize_frames(np.ascontiguousarray(frames), clip, step, *xw, *yw, scale,
                                  bias, out)


def resize_crop_normalize_into(
    frame: np.ndarray,
    new_size: tuple[int, int],
    crop: tuple[int, int],
    scale: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write ``crop(resize(frame, new_size)) * scale + bias`` into ``out`` (3, S, S) float32.

    ``frame`` is an RGB uint8 (H, W, 3) array; ``new_size`` the (width, height) of the
    bicubic resize; ``crop`` the (left, top) of the S x S crop, which must lie inside it;
    ``scale`` and ``bias`` are per-channel float32. The uint8 pixels before scaling equal
    Pillow's ``Image.resize(new_size, BICUBIC).crop(...)``. Releases the GIL.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise FeatureError(f"resize: expected uint8 (H, W, 3), got {frame.shape}", BAD_SHAPE)
    if out.ndim != 3:
        raise FeatureError(f"resize: expected a (3, S, S) output, got {out.shape}", BAD_SHAPE)
    resize_crop_normalize_frames_into(frame[None], (np.zeros(1), np.zeros(1)), new_size, crop,
                                      scale, bias, out[None, :, None])


__all__ = ["FILTERS", "AxisWeights", "bicubic_weights", "crop_weights", "pillow_coefficients",
           "resize_crop_normalize_frames_into", "resize_crop_normalize_into"]
