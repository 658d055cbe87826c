"""Batched frame featurizers: the float resize equals Pillow's mode ``F`` bit for bit, and a
batch (one kernel call per size) gives exactly the rows of one call per frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from streambind.errors import FeatureError
from streambind.features import (
    depth_frame,
    depth_frames,
    thermal_frame,
    thermal_frames,
    vision_frame,
    vision_windows,
)
from streambind.features.resize import resize_crop_normalize_frames_into
from streambind.features.vision import center_crop_box, resize_crop_planes, short_side_size

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def pillow_plane(plane: np.ndarray, filter_name: str) -> np.ndarray:
    height, width = plane.shape
    new_w, new_h = short_side_size(width, height)
    image = Image.fromarray(plane)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), FILTERS[filter_name])
    left, top = center_crop_box(new_w, new_h)
    return np.asarray(image)[top : top + 224, left : left + 224]


@pytest.mark.parametrize("filter_name", sorted(FILTERS))
@pytest.mark.parametrize(
    ("h", "w"),
    [(120, 160), (24, 32), (480, 640), (300, 200), (224, 224), (224, 300), (500, 224),
     (7, 9), (1, 1), (223, 225), (1000, 30)],
)
def test_float_planes_resize_bit_for_bit_as_pillow_mode_f(filter_name, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    planes = (rng.random((3, h, w), dtype=np.float32) * 4 - 1).astype(np.float32)
    planes[1, : h // 2] = 0.0  # flat areas and hard edges, where rounding would show
    out = resize_crop_planes(planes, filter_name)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    for plane, got in zip(planes, out, strict=True):
        want = pillow_plane(plane, filter_name)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_batch_of_depth_frames_equals_one_frame_at_a_time():
    rng = np.random.default_rng(1)
    frames = []
    for shape in [(120, 160), (120, 160), (60, 80), (120, 160)]:
        mm = rng.integers(0, 6000, shape, dtype=np.uint16)
        mm[::3, ::5] = 0  # holes
        frames.append((mm, "u16_mm"))
    metres = rng.random((120, 160), dtype=np.float32) * 8
    metres[::4, ::3] = np.nan
    frames.append((metres, "f32_m"))
    batch = depth_frames(frames)
    assert batch.shape == (5, 1, 224, 224)
    for row, (frame, encoding) in zip(batch, frames, strict=True):
        torch.testing.assert_close(row, depth_frame(frame, encoding), atol=0, rtol=0)


def test_a_batch_of_thermal_frames_equals_one_frame_at_a_time():
    rng = np.random.default_rng(2)
    frames = [(rng.integers(0, 2**14, (24, 32), dtype=np.uint16), "u16") for _ in range(3)]
    frames.append((np.full((24, 32), 700, np.uint16), "u16"))  # flat: all zeros
    frames.append((rng.random((48, 64), dtype=np.float32) * 60 - 10, "f32_c"))
    frames.append((rng.integers(0, 256, (24, 32), dtype=np.uint8), "u8"))
    for normalization in ("auto", "minmax", "fixed"):
        batch = thermal_frames(frames, normalization=normalization)
        assert batch.shape == (6, 1, 224, 224)
        for row, (frame, encoding) in zip(batch, frames, strict=True):
            one = thermal_frame(frame, encoding, normalization=normalization)
            torch.testing.assert_close(row, one, atol=0, rtol=0)
        if normalization != "fixed":
            assert not batch[3].any()  # per-frame min-max of a flat frame


def test_one_bad_frame_fails_the_batch_with_its_reason():
    good = (np.full((24, 32), 1500, np.uint16), "u16_mm")
    with pytest.raises(FeatureError) as err:
        depth_frames([good, (np.full((24, 32), 1500, np.uint16), "u16")])
    assert err.value.reason == "bad_encoding"
    hot = np.full((24, 32), 1.0, np.float32)
    hot[3, 3] = np.inf
    with pytest.raises(FeatureError) as err:
        thermal_frames([(np.ones((24, 32), np.float32), "f32_c"), (hot, "f32_c")])
    assert err.value.reason == "non_finite"
    with pytest.raises(FeatureError):
        depth_frames([])


def test_a_vision_batch_is_one_call_per_size_and_equals_one_frame_at_a_time():
    rng = np.random.default_rng(3)
    clips = [[rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
             for _ in range(9)]
    clips.insert(4, [rng.integers(0, 256, (90, 200, 3), dtype=np.uint8)])
    out = vision_windows(clips)
    for row, clip in zip(out, clips, strict=True):
        torch.testing.assert_close(row[:, 0], vision_frame(clip[0]), atol=0, rtol=0)
        torch.testing.assert_close(row[:, 1], vision_frame(clip[-1]), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("slots", "out_shape"),
    [
        (([0, 2], [0, 1]), (2, 3, 2, 224, 224)),  # clip index past the batch
        (([0, 1], [0, 2]), (2, 3, 2, 224, 224)),  # time step past the clip
        (([0], [0]), (2, 3, 2, 224, 224)),  # fewer slots than frames
        (([0, 1], [0, 1]), (2, 3, 2, 224, 100)),  # not a square crop
    ],
)
def test_the_batch_kernel_refuses_slots_outside_its_output(slots, out_shape):
    frames = np.zeros((2, 120, 160, 3), np.uint8)
    out = np.zeros(out_shape, np.float32)
    scale, bias = np.ones(3, np.float32), np.zeros(3, np.float32)
    resize_crop_normalize_frames_into(frames, ([0, 1], [1, 0]), (298, 224), (37, 0), scale,
                                      bias, np.zeros((2, 3, 2, 224, 224), np.float32))
    with pytest.raises(FeatureError):
        resize_crop_normalize_frames_into(frames, slots, (298, 224), (37, 0), scale, bias, out)
