"""Vision: RGB frames to ImageBind's 3×224×224 image and 3×2×224×224 clip inputs.

The reference resizes a PIL image with torchvision ``Resize(224, BICUBIC)`` (shorter side to
224, longer side ``int(224 * long / short)``), ``CenterCrop(224)`` (offsets rounded with
Python's ``round``), ``ToTensor`` (/255) and the CLIP mean/std. Pillow's bicubic filter works
in fixed point on uint8 and is not reproduced exactly by float interpolation, so the resize
is done by Pillow itself; cropping and normalization are vectorized over the batch, and the
Pillow calls of a batch run on a small thread pool (Pillow releases the GIL while resampling).
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

from ._checks import BAD_SHAPE, TOO_SHORT, as_array

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Largest frame accepted (pixels): bounds memory per frame and rejects decompression bombs.
MAX_PIXELS = 4096 * 4096
# Threads for the Pillow resizes of one batch; Pillow releases the GIL while resampling.
RESIZE_THREADS = max(1, min(8, os.cpu_count() or 1))

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


def resize_crop(frame: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Pillow bicubic shorter-side resize + centre crop of a checked frame: uint8 (size, size, 3).

    Pixel-identical to torchvision ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` on the PIL
    image, because the resize is Pillow's.
    """
    height, width = frame.shape[:2]
    new_w, new_h = short_side_size(width, height, size)
    image = Image.fromarray(np.ascontiguousarray(frame))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    out = np.asarray(image)
    if new_w < size or new_h < size:
        # Only when the longer side truncates below `size` (never for size <= short side);
        # torchvision pads with zeros before cropping.
        padded = np.zeros((max(new_h, size), max(new_w, size), 3), np.uint8)
        top, left = (padded.shape[0] - new_h) // 2, (padded.shape[1] - new_w) // 2
        padded[top : top + new_h, left : left + new_w] = out
        out, new_h, new_w = padded, padded.shape[0], padded.shape[1]
    left, top = center_crop_box(new_w, new_h, size)
    return out[top : top + size, left : left + size]


def resize_crop_plane(
    plane: np.ndarray, resample: int = Image.Resampling.BICUBIC, size: int = IMAGE_SIZE
) -> np.ndarray:
    """Shorter-side resize + centre crop of one 2-D plane (uint8 or float32) with Pillow.

    uint8 planes use Pillow's 8-bit path (mode ``L``, like a grayscale PIL image); anything
    else is resampled as float32 (mode ``F``). Same geometry as :func:`resize_crop`.
    """
    height, width = plane.shape
    new_w, new_h = short_side_size(width, height, size)
    if plane.dtype != np.uint8:
        plane = plane.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(plane))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample)
    left, top = center_crop_box(new_w, new_h, size)
    return np.array(image)[top : top + size, left : left + size]


@lru_cache(maxsize=1)
def _scale_bias() -> tuple[torch.Tensor, torch.Tensor]:
    # (x / 255 - mean) / std as one multiply-add per pixel: x * scale + bias.
    std = torch.tensor(CLIP_STD, dtype=torch.float64)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(3, 1, 1)
    bias = (-mean / std).to(torch.float32).view(3, 1, 1)
    return scale, bias


def normalize_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32: ``(x / 255 - mean) / std`` (CLIP).

    Computed as one multiply-add with precomputed constants; equal to the reference's
    ``ToTensor`` + ``Normalize`` within float32 rounding (~1e-6).
    """
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # Pillow's arrays are read-only; torch wants writable memory
    scale, bias = _scale_bias()
    batch = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous().to(torch.float32)
    return batch.mul_(scale).add_(bias)


def _into(out: torch.Tensor, frame: np.ndarray) -> None:
    # Worker-thread body: resize (Pillow, GIL released) and normalize straight into `out`.
    # numpy rather than torch here: torch ops on a worker thread start their own OpenMP team,
    # and two teams per core measured ~20% slower than plain single-threaded numpy.
    scale, bias = _scale_bias()
    crop = resize_crop(frame)
    dest = out.numpy()  # (3, 224, 224) view of the output tensor
    for ch in range(3):
        # float32 scalars keep the loop in float32, like the reference's tensor arithmetic.
        np.multiply(crop[:, :, ch], np.float32(scale[ch, 0, 0]), out=dest[ch])
        dest[ch] += np.float32(bias[ch, 0, 0])


def vision_frame(frame: object) -> torch.Tensor:
    """One RGB uint8 (H, W, 3) frame -> Tensor[3, 224, 224], exactly as the reference."""
    return normalize_uint8(resize_crop(check_frame(frame))[None])[0]


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


def vision_windows(windows: Sequence[Sequence[object]]) -> torch.Tensor:
    """Many clips at once -> Tensor[B, 3, 2, 224, 224].

    Frames may differ in size. The Pillow resizes run on a thread pool; uint8 crops are
    stacked and normalized in one tensor operation.
    """
    if isinstance(windows, str | bytes) or not isinstance(windows, Sequence) or not windows:
        raise FeatureError("vision: expected a non-empty list of frame lists", BAD_SHAPE)
    frames = [frame for clip in windows for frame in _first_last(clip, "vision")]
    out = torch.empty(len(windows), 3, 2, IMAGE_SIZE, IMAGE_SIZE)
    # Frame t of clip b is written straight into its (3, 224, 224) view out[b, :, t]: no
    # stacking or permuting copy of the whole batch afterwards.
    slots = [out[b, :, t] for b in range(len(windows)) for t in range(2)]
    if len(frames) > 2:
        # Frames are independent: each worker resizes and normalizes its own into `out`.
        list(_POOL.get().map(_into, slots, frames))
    else:
        for slot, frame in zip(slots, frames, strict=True):
            _into(slot, frame)
    return out


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_SIZE",
    "MAX_PIXELS",
    "center_crop_box",
    "check_frame",
    "normalize_uint8",
    "resize_crop",
    "resize_crop_plane",
    "short_side_size",
    "vision_frame",
    "vision_window",
    "vision_windows",
]
