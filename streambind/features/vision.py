"""Vision: RGB frames to ImageBind's 3×224×224 image and 3×2×224×224 clip inputs.

The reference resizes a PIL image with torchvision ``Resize(224, BICUBIC)`` (shorter side to
224, longer side ``int(224 * long / short)``), ``CenterCrop(224)`` (offsets rounded with
Python's ``round``), ``ToTensor`` (/255) and the CLIP mean/std. Pillow's bicubic filter works
in fixed point on uint8 and is not reproduced by float interpolation; :mod:`.resize` performs
Pillow's integer arithmetic itself, for the crop only, with the normalization fused in. The
frames of a batch run on a small thread pool, a few frames per call of the compiled kernel
(which releases the GIL).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from streambind.errors import FeatureError
from streambind.features._pool import ForkSafePool

from . import resize_float
from ._checks import BAD_SHAPE, TOO_SHORT, as_array
from .resize import resize_crop_normalize_frames_into, resize_crop_normalize_into

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Threads for the frames of one batch; the resize kernel releases the GIL.
RESIZE_THREADS = max(1, min(8, os.cpu_count() or 1))
# Largest frame accepted (pixels): bounds memory per frame and rejects decompression bombs.
MAX_PIXELS = 4096 * 4096

_POOL = ForkSafePool(RESIZE_THREADS, "streambind-resize")


def short_side_size(width: int, height: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)``: shorter side to ``size``."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)  # torchvision truncates, it does not round
    return (size, new_long) if width <= height else (new_long, size)


def center_crop_box(width: int, height: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """(left, top) of torchvision's ``CenterCrop(size)``; Python ``round`` (half to even)."""
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def check_frame(frame: object, what: str = "vision") -> np.ndarray:
    """Validate an RGB frame: uint8 (H, W, 3); grayscale (H, W) and RGBA are converted."""
    arr = as_array(frame, what)
    if arr.dtype != np.uint8:
        raise FeatureError(f"{what}: expected uint8 pixels, got {arr.dtype}", BAD_SHAPE)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)  # PIL's L -> RGB replicates the channel
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise FeatureError(f"{what}: expected (H, W, 3) RGB, got shape {arr.shape}", BAD_SHAPE)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]  # PIL's RGBA -> RGB drops alpha
    height, width = arr.shape[:2]
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise FeatureError(f"{what}: frame size {width}x{height} out of range", BAD_SHAPE)
    return arr


def resize_crop_plane(
    plane: np.ndarray, resample: int = Image.Resampling.BICUBIC, size: int = IMAGE_SIZE
) -> np.ndarray:
    """Shorter-side resize + centre crop of one 2-D plane (uint8 or float32), as Pillow.

    uint8 planes use Pillow's 8-bit path (mode ``L``, like a grayscale PIL image); anything
    else is resampled as float32 (mode ``F``), bit for bit as Pillow would (see
    :func:`resize_crop_planes`). Same geometry as :func:`vision_frame`.
    """
    if plane.dtype != np.uint8:
        name = {Image.Resampling.BILINEAR: "bilinear", Image.Resampling.BICUBIC: "bicubic"}
        return resize_crop_planes(plane.astype(np.float32, copy=False)[None], name[resample],
                                  size)[0]
    height, width = plane.shape
    new_w, new_h = short_side_size(width, height, size)
    image = Image.fromarray(np.ascontiguousarray(plane))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample)
    left, top = center_crop_box(new_w, new_h, size)
    return np.array(image)[top : top + size, left : left + size]


def resize_crop_planes(planes: np.ndarray, filter_name: str, size: int = IMAGE_SIZE
                       ) -> np.ndarray:
    """(N, H, W) float32 planes -> (N, size, size): Pillow's mode ``F`` resize (shorter side
    to ``size``, ``filter_name`` ``"bilinear"`` or ``"bicubic"``) and the centre crop, in one
    call that releases the GIL (:mod:`.resize_float`)."""
    height, width = planes.shape[1:]
    new_w, new_h = short_side_size(width, height, size)
    return resize_float.resize_crop_planes(planes, (new_w, new_h), center_crop_box(new_w, new_h,
                                           size), size, filter_name)


@lru_cache(maxsize=1)
def _scale_bias() -> tuple[np.ndarray, np.ndarray]:
    # (x / 255 - mean) / std as one float32 multiply-add per pixel: x * scale + bias.
    std = np.array(CLIP_STD, dtype=np.float64)
    mean = np.array(CLIP_MEAN, dtype=np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def vision_frame(frame: object) -> torch.Tensor:
    """One RGB uint8 (H, W, 3) frame -> Tensor[3, 224, 224], exactly as the reference."""
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    new_w, new_h = short_side_size(width, height)
    scale, bias = _scale_bias()
    out = torch.empty(3, IMAGE_SIZE, IMAGE_SIZE)
    resize_crop_normalize_into(frame, (new_w, new_h), center_crop_box(new_w, new_h), scale,
                               bias, out.numpy())
    return out


def _first_last(frames: Sequence[object], what: str) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if not isinstance(frames, Sequence) or isinstance(frames, str | bytes):
        raise FeatureError(f"{what}: expected a list of frames", BAD_SHAPE)
    if len(frames) == 0:
        raise FeatureError(f"{what}: a window needs at least one frame", TOO_SHORT)
    # Two frames "sampled uniformly" over the clip are its first and last frame; a window with
    # a single frame uses it twice.
    return [check_frame(frames[0], what), check_frame(frames[-1], what)]


def vision_window(frames: Sequence[object]) -> torch.Tensor:
    """A clip's frames (list of RGB uint8 arrays) -> Tensor[3, 2, 224, 224] (first, last)."""
    return vision_windows([frames])[0]


def _frames_into(out: np.ndarray, frames: list[np.ndarray], index: np.ndarray) -> None:
    # Frames index[i] (all of one size) into their slots out[n // 2, :, n % 2], in one call.
    height, width = frames[index[0]].shape[:2]
    new_w, new_h = short_side_size(width, height)
    scale, bias = _scale_bias()
    stack = np.stack([frames[n] for n in index])  # (N, H, W, 3)
    resize_crop_normalize_frames_into(stack, (index // 2, index % 2), (new_w, new_h),
                                      center_crop_box(new_w, new_h), scale, bias, out)


def vision_windows(windows: Sequence[Sequence[object]]) -> torch.Tensor:
    """Many clips at once -> Tensor[B, 3, 2, 224, 224].

    Frames may differ in size. The frames of each size are resized, cropped and normalized
    straight into their slots of the output, split into one part per pool thread, each part
    one call of the compiled kernel: the GIL is released and retaken a few times per batch,
    not per frame (under contention every retake can wait a whole switch interval).
    """
    if isinstance(windows, str | bytes) or not isinstance(windows, Sequence) or not windows:
        raise FeatureError("vision: expected a non-empty list of frame lists", BAD_SHAPE)
    frames = [frame for clip in windows for frame in _first_last(clip, "vision")]
    out = torch.empty(len(windows), 3, 2, IMAGE_SIZE, IMAGE_SIZE)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for n, frame in enumerate(frames):
        by_size.setdefault(frame.shape[:2], []).append(n)
    # Each size's frames split into one part per pool thread, each part one kernel call.
    parts = [part for index in by_size.values()
             for part in np.array_split(np.asarray(index), min(RESIZE_THREADS, len(index)))]
    target = out.numpy()
    if len(parts) > 1:
        list(_POOL.get().map(lambda part: _frames_into(target, frames, part), parts))
    else:
        _frames_into(target, frames, parts[0])
    return out


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_SIZE",
    "MAX_PIXELS",
    "center_crop_box",
    "check_frame",
    "resize_crop_plane",
    "resize_crop_planes",
    "short_side_size",
    "vision_frame",
    "vision_window",
    "vision_windows",
]
