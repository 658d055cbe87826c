"""Small JPEG previews of frame windows, carried on ``streambind.embeddings`` records.

Pure functions: a decoded frame (RGB ``(H, W, 3)`` uint8, or a single-channel depth or
thermal ``(H, W)`` array) or the frame's still-encoded bytes in, JPEG bytes out. A preview
that cannot be made is ``None``; it never fails the window.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE_PX = 96
"""Longer side of a preview; a 96 px JPEG at quality 70 is about 2-4 kB."""
FRAME_MODALITIES = ("vision", "depth", "thermal")


def _to_image(frame: object):  # type: ignore[no-untyped-def]
    from PIL import Image

    if isinstance(frame, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(bytes(frame)))
    arr = np.asarray(frame)
    if arr.ndim == 1 and arr.dtype == np.uint8:  # encoded bytes kept as an array
        return Image.open(io.BytesIO(arr.tobytes()))
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8, copy=False)), "RGB")
    if arr.ndim == 2:
        values = arr.astype(np.float32)
        finite = np.isfinite(values)
        if not finite.any():
            return None
        lo, hi = np.percentile(values[finite], [1, 99])
        scaled = np.clip((values - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
        scaled[~finite] = 0.0
        return Image.fromarray((scaled * 255).astype(np.uint8), "L")
    return None


def thumbnail_jpeg(frame: object, side_px: int = THUMBNAIL_SIDE_PX) -> bytes | None:
    """A JPEG whose longer side is at most ``side_px``, or None when the frame is unusable."""
    try:
        image = _to_image(frame)
        if image is None:
            return None
        image = image.convert("RGB")
        image.thumbnail((side_px, side_px))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=70)
        return out.getvalue()
    except (OSError, ValueError, TypeError) as exc:
        logger.debug("no preview: %s", exc)
        return None


def middle_frame(chunks: Sequence, start_ns: int, end_ns: int) -> object | None:
    """The data of the chunk nearest the window's middle (chunks carry ``ts_ns``, ``data``)."""
    if not chunks:
        return None
    middle = start_ns + (end_ns - start_ns) // 2
    best = min(chunks, key=lambda c: (abs(c.ts_ns - middle), c.ts_ns))
    return best.data
