"""Vision featurizer and frame decoding: parity with the Pillow/torchvision reference path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from streambind.errors import FeatureError
from streambind.features import decode_frame, vision_frame, vision_window, vision_windows

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def reference(frame: np.ndarray) -> np.ndarray:
    """The reference path, spelled out: PIL bicubic resize of the shorter side to 224 (longer
    side int(224 * long / short), as torchvision's Resize), CenterCrop with Python round,
    ToTensor (/255) and the CLIP mean/std, in float64."""
    image = Image.fromarray(frame).convert("RGB")
    w, h = image.size
    if w <= h:
        size = (224, int(224 * h / w))
    else:
        size = (int(224 * w / h), 224)
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    crop = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1)


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Smooth gradients plus noise: both the interpolation and the edges matter.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("h", "w"),
    [(480, 640), (640, 480), (224, 224), (224, 300), (301, 224), (100, 150), (720, 1299)],
)
def test_vision_frame_matches_pillow_reference(h, w):
    img = frame(h, w, seed=h + w)
    out = vision_frame(img)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), reference(img), atol=1e-5, rtol=0)


def test_bicubic_is_what_is_compared():
    # The reference comparison above would fail for a bilinear resize: the filters differ.
    img = frame(480, 640)
    bilinear = np.asarray(Image.fromarray(img).resize((298, 224), Image.Resampling.BILINEAR))
    bicubic = np.asarray(Image.fromarray(img).resize((298, 224), Image.Resampling.BICUBIC))
    assert np.abs(bilinear.astype(int) - bicubic.astype(int)).max() > 5


def test_window_takes_first_and_last_frame():
    frames = [frame(240, 320, seed=s) for s in range(5)]
    out = vision_window(frames)
    assert out.shape == (3, 2, 224, 224)
    torch.testing.assert_close(out[:, 0], vision_frame(frames[0]), atol=0, rtol=0)
    torch.testing.assert_close(out[:, 1], vision_frame(frames[-1]), atol=0, rtol=0)
    single = vision_window([frames[2]])
    torch.testing.assert_close(single[:, 0], single[:, 1], atol=0, rtol=0)


def test_batched_windows_equal_single_windows_mixed_sizes():
    clips = [
        [frame(240, 320, 1), frame(240, 320, 2), frame(240, 320, 3)],
        [frame(300, 200, 4), frame(300, 200, 5)],
        [frame(224, 224, 6)],
    ]
    out = vision_windows(clips)
    assert out.shape == (3, 3, 2, 224, 224)
    for i, clip in enumerate(clips):
        torch.testing.assert_close(out[i], vision_window(clip), atol=0, rtol=0)


def test_grayscale_and_rgba_frames_convert_like_pil():
    gray = frame(200, 260)[:, :, 0]
    np.testing.assert_allclose(
        vision_frame(gray).numpy(), reference(np.stack([gray] * 3, -1)), atol=1e-5
    )
    rgba = np.concatenate([frame(200, 260), np.full((200, 260, 1), 7, np.uint8)], -1)
    np.testing.assert_allclose(vision_frame(rgba).numpy(), reference(rgba[:, :, :3]), atol=1e-5)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: vision_frame(np.zeros((10, 10, 3), np.float32)), "bad_shape"),
        (lambda: vision_frame(np.zeros((10, 10, 2), np.uint8)), "bad_shape"),
        (lambda: vision_frame(np.zeros((0, 10, 3), np.uint8)), "bad_shape"),
        (lambda: vision_frame(np.zeros((5000, 4000, 3), np.uint8)), "bad_shape"),
        (lambda: vision_window([]), "too_short"),
        (lambda: vision_windows([]), "bad_shape"),
        (lambda: vision_windows("abc"), "bad_shape"),
    ],
)
def test_vision_rejections(call, reason):
    with pytest.raises(FeatureError) as err:
        call()
    assert err.value.reason == reason


def encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_compressed_frames():
    img = frame(48, 64)
    png = decode_frame("png", 64, 48, encode(img, "PNG"))
    np.testing.assert_array_equal(png, img)
    jpg_bytes = encode(img, "JPEG")
    jpg = decode_frame("jpeg", 64, 48, jpg_bytes)
    assert jpg.shape == (48, 64, 3) and jpg.dtype == np.uint8
    np.testing.assert_array_equal(jpg, np.asarray(Image.open(io.BytesIO(jpg_bytes))))
    # A grayscale PNG becomes RGB with the channel replicated.
    gray = decode_frame("png", 64, 48, encode(img[:, :, 0], "PNG"))
    np.testing.assert_array_equal(gray, np.stack([img[:, :, 0]] * 3, -1))


def test_decode_raw_frames_little_endian():
    img = frame(3, 4)
    np.testing.assert_array_equal(decode_frame("rgb8", 4, 3, img.tobytes()), img)
    mm = np.array([[0, 1, 1000], [65535, 258, 7]], dtype="<u2")
    out = decode_frame("u16_mm", 3, 2, bytes([0, 0, 1, 0, 0xE8, 3, 255, 255, 2, 1, 7, 0]))
    np.testing.assert_array_equal(out, mm)
    assert out.dtype == np.uint16
    metres = np.array([[1.5, np.nan], [0.0, 2.25]], dtype="<f4")
    np.testing.assert_array_equal(decode_frame("f32_m", 2, 2, metres.tobytes()), metres)
    assert decode_frame("u8", 2, 1, b"\x01\xff").tolist() == [[1, 255]]
    assert decode_frame("u16", 1, 1, b"\x34\x12").tolist() == [[0x1234]]
    celsius = np.array([[36.6, -5.0]], dtype="<f4")
    np.testing.assert_array_equal(decode_frame("f32_c", 2, 1, celsius.tobytes()), celsius)
    # The result owns its memory: the payload buffer can be reused.
    payload = bytearray(b"\x01\x02")
    out = decode_frame("u8", 2, 1, payload)
    payload[0] = 9
    assert out[0, 0] == 1


def test_decode_rejects_bombs_before_decoding():
    data = encode(frame(300, 400), "PNG")
    with pytest.raises(FeatureError) as err:
        decode_frame("png", 400, 300, data, max_pixels=256 * 256)
    assert err.value.reason == "bad_shape"
    # A header that claims more than the declared size is refused before decoding.
    with pytest.raises(FeatureError) as err:
        decode_frame("png", 40, 30, data)
    assert err.value.reason == "bad_shape"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("bmp", 2, 2, b"\0" * 12), "bad_encoding"),
        (("thermal", 2, 2, b"\0" * 4), "bad_encoding"),
        (("rgb8", 2, 2, b"\0" * 11), "decode_error"),
        (("u16_mm", 2, 2, b"\0" * 7), "decode_error"),
        (("f32_c", 1, 1, b"\0" * 3), "decode_error"),
        (("jpeg", 64, 48, b"not a jpeg at all"), "decode_error"),
        (("png", 64, 48, encode(frame(48, 64), "JPEG")), "decode_error"),
        (("jpeg", 64, 48, encode(frame(48, 64), "JPEG")[:300]), "decode_error"),
        (("rgb8", 0, 2, b""), "bad_shape"),
        (("rgb8", 2.0, 2, b"\0" * 12), "bad_shape"),
        (("u8", 5000, 5000, b""), "bad_shape"),
    ],
)
def test_decode_rejections(args, reason):
    with pytest.raises(FeatureError) as err:
        decode_frame(*args)
    assert err.value.reason == reason
