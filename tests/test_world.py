"""The synthetic world: deterministic per seed, varied per draw, distinct per activity."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from streambind.world import (
    ACTIVITIES,
    ACTIVITY_NAMES,
    MODALITIES,
    UnknownActivityError,
    activity,
    caption,
    label_set,
    render_windows,
    sample_nuisance,
)
from streambind.world.render import render_audio, render_imu


def _equal(a, b) -> bool:
    if isinstance(a, list):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def test_activities_have_prompts_and_captions():
    assert 10 <= len(ACTIVITIES) <= 16
    assert len(set(ACTIVITY_NAMES)) == len(ACTIVITIES)
    rng = np.random.default_rng(0)
    for act in ACTIVITIES:
        assert act.prompts and act.captions
        text = caption(act.name, rng)
        assert text and "{" not in text
    with pytest.raises(UnknownActivityError):
        activity("juggling")
    doc = label_set(threshold=0.1)
    assert [lab["name"] for lab in doc["labels"]] == list(ACTIVITY_NAMES)


def test_windows_are_deterministic_per_seed_and_vary_across_draws():
    for name in ACTIVITY_NAMES:
        a = render_windows(name, np.random.default_rng(5))
        b = render_windows(name, np.random.default_rng(5))
        c = render_windows(name, np.random.default_rng(6))
        for m in MODALITIES:
            assert _equal(a[m].data, b[m].data), (name, m)
            assert not _equal(a[m].data, c[m].data), (name, m)


def test_windows_have_the_raw_sensor_formats():
    w = render_windows("walking", np.random.default_rng(1), frame_size=(90, 120),
                       audio_rate=44_100, imu_rate=200)
    frames = w["vision"].data
    assert len(frames) == 2 and frames[0].shape == (90, 120, 3) and frames[0].dtype == np.uint8
    assert w["audio"].data.dtype == np.float32 and w["audio"].data.shape == (88_200,)
    assert np.abs(w["audio"].data).max() <= 1.0
    assert w["depth"].data.dtype == np.uint16 and w["depth"].encoding == "u16_mm"
    assert w["thermal"].data.dtype == np.float32 and w["thermal"].encoding == "f32_c"
    assert w["imu"].data.shape == (1000, 6) and w["imu"].sample_rate == 200
    # At rest-ish, the accelerometer's mean magnitude is about g.
    assert 8.0 < np.linalg.norm(w["imu"].data[:, :3].mean(0)) < 11.5


def test_spans_continue_each_other():
    """Rendering a span in two chunks gives the same signal as in one (up to sensor noise)."""
    n = sample_nuisance(np.random.default_rng(3))
    for name in ("people talking", "walking", "music playing"):
        whole = render_audio(name, 1.0, 3200, 16000, n, np.random.default_rng(0))
        parts = np.concatenate([render_audio(name, 1.0, 1600, 16000, n, np.random.default_rng(0)),
                                render_audio(name, 1.1, 1600, 16000, n, np.random.default_rng(0))])
        assert np.corrcoef(whole, parts)[0, 1] > 0.9, name
        imu = render_imu(name, 1.0, 400, 400, n, np.random.default_rng(0))
        imu2 = np.concatenate([render_imu(name, 1.0, 200, 400, n, np.random.default_rng(0)),
                               render_imu(name, 1.5, 200, 400, n, np.random.default_rng(0))])
        assert np.abs(imu - imu2).max() < 1.0, name


def _shape_stats(fg: np.ndarray) -> np.ndarray:
    """Translation-invariant statistics of a foreground mask (H, W)."""
    h, w = fg.shape
    area = fg.mean()
    if not fg.any():
        return np.zeros(9)
    ys, xs = np.nonzero(fg)
    bh, bw = (ys.max() - ys.min() + 1) / h, (xs.max() - xs.min() + 1) / w
    thirds = np.array_split(fg[ys.min(): ys.max() + 1], 3)
    fill = [t.mean() if t.size else 0.0 for t in thirds]
    return np.array([area, bh, bw, np.log(bh / bw), area / (bh * bw), *fill, ys.mean() / h])


def _features(modality: str, data, background=None) -> np.ndarray:
    """Cheap hand-made, position- and colour-invariant features: enough to show that the
    classes are separable by something other than a lookup. Frame modalities compare
    with the same scene's empty room (``background``) to find the foreground."""
    if modality == "vision":
        fgs, out = [], []
        for f, b in zip(data, background, strict=True):
            f = f.astype(np.float32) / 255
            fg = np.abs(f - b.astype(np.float32) / 255).sum(2) > 0.25
            fgs.append(fg)
            sat = (f.max(2) - f.min(2))[fg]
            out += [_shape_stats(fg), [sat.mean() if fg.any() else 0.0]]
        return np.concatenate([*out, [(fgs[0] ^ fgs[1]).mean()]])
    if modality in ("depth", "thermal"):
        diff = background.astype(np.float32) - data.astype(np.float32)
        if modality == "depth":
            fg = diff > 200  # 20 cm nearer than the empty room
        else:
            fg = -diff > 3.0  # 3 degrees warmer
        return np.concatenate([_shape_stats(fg), [np.log1p(np.abs(diff[fg]).mean())
                                                  if fg.any() else 0.0]])
    if modality == "audio":
        spec = np.abs(np.fft.rfft(data.reshape(-1, 400) * np.hanning(400), axis=1))[:, :200] ** 2
        bands = np.log(spec.reshape(spec.shape[0], 40, 5).mean(2) + 1e-8)
        return np.concatenate([bands.mean(0), bands.std(0)])
    acc = np.linalg.norm(data[:, :3], axis=1)
    gyro = np.linalg.norm(data[:, 3:], axis=1)
    out = []
    for x in (acc, gyro):
        mag = np.abs(np.fft.rfft(x - x.mean()))[:1000]
        out += [np.log(mag.reshape(25, -1).mean(1) + 1e-6),
                np.log([x.std() + 1e-6, np.abs(x - np.median(x)).max() + 1e-6])]
    return np.concatenate(out)


@pytest.mark.parametrize("modality", MODALITIES)
def test_activities_are_distinct_in_every_modality(modality):
    """A nearest-centroid classifier on crude features beats chance by far on fresh draws."""
    rng = np.random.default_rng(11)
    train, test = 8, 4
    feats: dict[str, list[np.ndarray]] = {}
    for name in ACTIVITY_NAMES:
        feats[name] = []
        for _ in range(train + test):
            n = sample_nuisance(rng)
            centre = float(rng.uniform(3, 60))
            seed = int(rng.integers(1 << 30))
            data = render_windows(name, np.random.default_rng(seed), (modality,), nuisance=n,
                                  centre_s=centre)[modality].data
            empty = render_windows("an empty room", np.random.default_rng(seed), (modality,),
                                   nuisance=n, centre_s=centre)[modality].data
            feats[name].append(_features(modality, data, empty))
    allf = np.stack([f for v in feats.values() for f in v])
    mu, sd = allf.mean(0), allf.std(0) + 1e-6
    cents = np.stack([((np.stack(v[:train]) - mu) / sd).mean(0) for v in feats.values()])
    hits = 0
    for i, v in enumerate(feats.values()):
        for f in v[train:]:
            hits += int(np.argmin(((cents - (f - mu) / sd) ** 2).sum(1)) == i)
    accuracy = hits / (test * len(ACTIVITY_NAMES))
    chance = 1 / len(ACTIVITY_NAMES)
    assert accuracy > 4 * chance, (modality, accuracy)


def test_world_list_command():
    out = subprocess.run([sys.executable, "-m", "streambind", "world", "--list"],
                         capture_output=True, text=True, check=True, timeout=60)
    doc = json.loads(out.stdout)
    assert [a["name"] for a in doc["activities"]] == list(ACTIVITY_NAMES)
    assert all(a["prompts"] and isinstance(a["prompts"][0], str) for a in doc["activities"])
