"""Frame payload decoding for ``sensors.vision``, ``sensors.depth`` and ``sensors.thermal``.

Raw encodings are little-endian, row-major, with no padding between rows:

| encoding | modality | bytes per pixel | decoded |
| --- | --- | --- | --- |
| ``jpeg``, ``png`` | vision | compressed | uint8 (H, W, 3) RGB |
| ``rgb8`` | vision | 3 | uint8 (H, W, 3) |
| ``u16_mm`` | depth | 2 | uint16 (H, W), millimetres, 0 = no reading |
| ``f32_m`` | depth | 4 | float32 (H, W), metres, NaN/0 = no reading |
| ``u8`` | thermal | 1 | uint8 (H, W) |
| ``u16`` | thermal | 2 | uint16 (H, W), raw sensor counts |
| ``f32_c`` | thermal | 4 | float32 (H, W), degrees Celsius |

The declared width and height must match the payload. Compressed images are checked
against their header before any pixel is decoded, so a small file that claims a huge
image (a decompression bomb) is rejected without allocating it.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
from PIL import Image

from streambind.errors import FeatureError

from ._checks import BAD_ENCODING, BAD_SHAPE, DECODE_ERROR
from .vision import MAX_PIXELS

log = logging.getLogger(__name__)

# encoding -> numpy dtype of one pixel for raw payloads (channels handled separately).
RAW_DTYPES: dict[str, tuple[str, int]] = {
    "rgb8": ("|u1", 3),
    "u16_mm": ("<u2", 1),
    "f32_m": ("<f4", 1),
    "u8": ("|u1", 1),
    "u16": ("<u2", 1),
    "f32_c": ("<f4", 1),
}
# Pillow format accepted per encoding (Pillow's JPEG opener also takes the MPO flavour that
# phone cameras write; its first picture is the frame).
COMPRESSED = {"jpeg": ("JPEG",), "png": ("PNG",)}
VISION_ENCODINGS = ("jpeg", "png", "rgb8")
DEPTH_ENCODINGS = ("u16_mm", "f32_m")
THERMAL_ENCODINGS = ("u8", "u16", "f32_c")
FRAME_ENCODINGS = VISION_ENCODINGS + DEPTH_ENCODINGS + THERMAL_ENCODINGS


_INTEGER = (int, np.integer)


def _check_size(width: object, height: object, max_pixels: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, _INTEGER):
            raise FeatureError(f"frame: {name} must be an integer, got {value!r}", BAD_SHAPE)
    w, h = int(width), int(height)
    if w < 1 or h < 1:
        raise FeatureError(f"frame: size {w}x{h} must be positive", BAD_SHAPE)
    if w * h > max_pixels:
        raise FeatureError(f"frame: {w}x{h} exceeds the {max_pixels}-pixel limit", BAD_SHAPE)
    return w, h


def _decode_compressed(
    formats: tuple[str, ...], width: int, height: int, data: bytes
) -> np.ndarray:
    fmt = formats[0]
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) on big images; our own cap applies first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(formats))
            if image.size != (width, height):
                raise FeatureError(
                    f"frame: declared {width}x{height} but the {fmt} header says "
                    f"{image.size[0]}x{image.size[1]}",
                    BAD_SHAPE,
                )
            image.load()  # decodes now, so a truncated/corrupt payload fails here
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.array(image, dtype=np.uint8)
    except FeatureError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise FeatureError(f"frame: corrupt {fmt} payload ({exc})", DECODE_ERROR) from exc


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not DHT (C4),
# JPG (C8) or DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment; None when not found."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if length < 7 or pos + 9 > n:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return width, height
        pos += 2 + length
    return None


def _png_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, which must come first; None otherwise."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_size(encoding: str, data: bytes | memoryview) -> tuple[int, int] | None:
    """The (width, height) a JPEG or PNG payload's header declares, read without Pillow
    (a few markers on the consumer thread; the body is checked when decoded); None when
    the header is not found."""
    view = memoryview(data).cast("B")
    return _jpeg_size(view) if encoding == "jpeg" else _png_size(view)


def _check_frame_args(encoding: str, width: int, height: int, data: object,
                      max_pixels: int) -> tuple[int, int]:
    """The checks every frame passes before its payload is looked at: encoding, size, type."""
    if encoding not in FRAME_ENCODINGS:
        raise FeatureError(f"frame: unknown encoding {encoding!r}", BAD_ENCODING)
    w, h = _check_size(width, height, max_pixels)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FeatureError(f"frame: payload must be bytes, got {type(data).__name__}")
    return w, h


def check_frame(
    encoding: str, width: int, height: int, data: bytes | memoryview, *,
    max_pixels: int = MAX_PIXELS,
) -> None:
    """Validate a frame payload without decoding its pixels (cheap: on the consumer thread).

    Raw encodings: the payload length must match the size. Compressed ones: the image
    header must name the declared size (a corrupt body is only found when the frame is
    decoded, see :func:`decode_frame`). Raises ``FeatureError`` as :func:`decode_frame`.
    """
    w, h = _check_frame_args(encoding, width, height, data, max_pixels)
    if encoding in COMPRESSED:
        formats = COMPRESSED[encoding]
        size = image_size(encoding, data)
        if size is None:
            raise FeatureError(f"frame: corrupt {formats[0]} header (no frame size found)",
                               DECODE_ERROR)
        if size != (w, h):
            raise FeatureError(f"frame: declared {w}x{h} but the {formats[0]} header says "
                               f"{size[0]}x{size[1]}", BAD_SHAPE)
        return
    dtype, channels = RAW_DTYPES[encoding]
    expected = w * h * channels * np.dtype(dtype).itemsize
    got = len(memoryview(data).cast("B"))
    if got != expected:
        raise FeatureError(f"frame: {encoding} {w}x{h} needs {expected} bytes, got {got}",
                           DECODE_ERROR)


def decode_frame(
    encoding: str, width: int, height: int, data: bytes, *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode one frame payload of the wire contract to a numpy array (see module table).

    Raises ``FeatureError``: ``bad_encoding`` for an unknown encoding, ``bad_shape`` when the
    declared size is invalid, above ``max_pixels`` or disagrees with the image header,
    ``decode_error`` when the payload is corrupt or its length does not match the size.
    """
    w, h = _check_frame_args(encoding, width, height, data, max_pixels)
    if encoding in COMPRESSED:
        return _decode_compressed(COMPRESSED[encoding], w, h, bytes(data))
    dtype, channels = RAW_DTYPES[encoding]
    itemsize = np.dtype(dtype).itemsize
    expected = w * h * channels * itemsize
    buf = memoryview(data).cast("B")
    if len(buf) != expected:
        raise FeatureError(
            f"frame: {encoding} {w}x{h} needs {expected} bytes, got {len(buf)}", DECODE_ERROR
        )
    arr = np.frombuffer(buf, dtype=dtype)
    shape = (h, w, channels) if channels > 1 else (h, w)
    # Native byte order and a private, writable copy (the payload buffer may be reused).
    return arr.reshape(shape).astype(np.dtype(dtype).newbyteorder("="), copy=True)


__all__ = [
    "DEPTH_ENCODINGS",
    "FRAME_ENCODINGS",
    "THERMAL_ENCODINGS",
    "VISION_ENCODINGS",
    "decode_frame",
]
