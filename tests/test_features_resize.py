"""The compiled crop-only bicubic resize equals Pillow's ``resize`` + ``crop``, pixel for pixel.

With scale 1 and bias 0 the kernel's float output is the uint8 crop itself, so each case
compares integers exactly against Pillow, the oracle the reference preprocessing used.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from streambind.errors import FeatureError
from streambind.features.resize import bicubic_weights, resize_crop_normalize_into
from streambind.features.vision import center_crop_box, short_side_size

ONES = np.ones(3, np.float32)
ZEROS = np.zeros(3, np.float32)


def pillow_crop(frame: np.ndarray, new_size: tuple[int, int], crop: tuple[int, int], size: int):
    resized = Image.fromarray(frame).resize(new_size, Image.Resampling.BICUBIC)
    left, top = crop
    return np.asarray(resized.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


def kernel_crop(frame: np.ndarray, new_size: tuple[int, int], crop: tuple[int, int], size: int):
    out = np.full((3, size, size), np.nan, np.float32)
    resize_crop_normalize_into(frame, new_size, crop, ONES, ZEROS, out)
    return out


def noisy_frame(h: int, w: int, seed: int) -> np.ndarray:
    # Hard 0/255 edges (where the bicubic overshoot must clip), gradients and noise.
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frame[: h // 3] = 255
    frame[h // 3 : h // 2, : w // 2] = 0
    frame[:, -max(1, w // 5) :, 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return frame


@pytest.mark.parametrize(
    ("h", "w"),
    [
        (480, 640),  # 4:3 camera, downscale 2.14
        (720, 1280),  # 16:9, downscale 3.2
        (1080, 1920),
        (640, 480),  # portrait: the crop is in y
        (224, 224),  # no resampling at all
        (224, 391),  # x only
        (397, 224),  # y only
        (225, 224),  # a hair over: every weight near identity
        (100, 150),  # upscale
        (31, 17),  # strong upscale, odd sizes
        (1, 1),
        (3, 2000),  # extreme aspect ratio
        (333, 251),
    ],
)
def test_shorter_side_resize_and_centre_crop_equal_pillow(h, w):
    frame = noisy_frame(h, w, seed=h * 7 + w)
    new_size = short_side_size(w, h)
    crop = center_crop_box(*new_size)
    expected = pillow_crop(frame, new_size, crop, 224)
    np.testing.assert_array_equal(kernel_crop(frame, new_size, crop, 224), expected)


@pytest.mark.parametrize(
    ("new_size", "crop", "size"),
    [((64, 48), (0, 0), 48), ((64, 48), (16, 0), 48), ((90, 70), (3, 11), 40), ((7, 9), (1, 2), 5)],
)
def test_any_crop_of_any_resize_equals_pillow(new_size, crop, size):
    frame = noisy_frame(61, 83, seed=size)
    np.testing.assert_array_equal(
        kernel_crop(frame, new_size, crop, size), pillow_crop(frame, new_size, crop, size)
    )


def test_scale_and_bias_are_applied_per_channel_in_float32():
    frame = noisy_frame(120, 160, seed=3)
    scale = np.array([0.5, 2.0, -1.0], np.float32)
    bias = np.array([1.0, -3.0, 0.25], np.float32)
    out = np.empty((3, 64, 64), np.float32)
    resize_crop_normalize_into(frame, (85, 64), (10, 0), scale, bias, out)
    pixels = pillow_crop(frame, (85, 64), (10, 0), 64).astype(np.float32)
    np.testing.assert_array_equal(out, pixels * scale[:, None, None] + bias[:, None, None])


def test_weights_are_pillows_fixed_point_bicubic():
    # Identity: every output reads its own pixel with weight 1.0 in 22-bit fixed point.
    same = bicubic_weights(10, 10, 0, 10)
    assert [same.weights[o, : same.count[o]].max() for o in range(10)] == [1 << 22] * 10
    # Halving: a 9-tap window (support 4 input pixels), weights summing to 1 within rounding,
    # with the negative lobes of the a = -0.5 kernel.
    half = bicubic_weights(100, 50, 0, 50)
    inner = half.weights[25, : half.count[25]]
    assert half.count[25] == 8 and abs(int(inner.sum()) - (1 << 22)) <= 4
    assert inner.min() < 0 and half.first[25] == 47
    # Cropped outputs are the same rows of the full table.
    full = bicubic_weights(640, 298, 0, 298)
    part = bicubic_weights(640, 298, 37, 224)
    np.testing.assert_array_equal(part.weights, full.weights[37:261])
    np.testing.assert_array_equal(part.first, full.first[37:261])


@pytest.mark.parametrize(
    ("frame", "new_size", "crop", "out_shape"),
    [
        (np.zeros((10, 10, 3), np.uint8), (20, 20), (5, 0), (3, 16, 16)),  # crop past the edge
        (np.zeros((10, 10, 3), np.uint8), (20, 20), (-1, 0), (3, 16, 16)),
        (np.zeros((10, 10, 3), np.uint8), (20, 20), (0, 0), (3, 16, 8)),  # not square
        (np.zeros((10, 10), np.uint8), (20, 20), (0, 0), (3, 16, 16)),
        (np.zeros((10, 10, 3), np.float32), (20, 20), (0, 0), (3, 16, 16)),
    ],
)
def test_rejects_what_the_unchecked_kernel_must_not_see(frame, new_size, crop, out_shape):
    with pytest.raises(FeatureError) as err:
        resize_crop_normalize_into(frame, new_size, crop, ONES, ZEROS, np.empty(out_shape, "f4"))
    assert err.value.reason == "bad_shape"
