"""Batched featurizers vs per-clip loops of the straightforward algorithm.

For a batch of two-second clips, times (best of ``--repeats``) three ways to featurize:

- ``per-clip reference``: a loop over clips of the algorithm as the reference runs it, one
  clip at a time. Audio: resample, remove the mean, frame, then per clip the Hann window and
  the mel filterbank are rebuilt (as ``torchaudio.compliance.kaldi.fbank`` does on every
  call), FFT, log, pad, normalize. Vision: per frame, PIL image, bicubic resize, crop,
  ``ToTensor``-style conversion, normalization, then stack the clip's two frames.
- ``per-clip streambind``: a loop of streambind's own single-window function.
- ``batched``: one call of the batched streambind function for the whole batch.

The ratio printed is clips/s of ``batched`` over clips/s of the other two. Outputs are
compared with the reference, so the speed-up is never bought with different numbers. Audio
runs at each of ``--sample-rates`` (16 kHz: no resampling; 48 kHz: resampling included).

Vision's batched path resizes with streambind's compiled kernel (``features/resize.py``),
which computes Pillow's fixed-point bicubic arithmetic for the 224x224 crop only; the
reference resizes the whole frame with Pillow. Both give the same uint8 pixels.

Timings interleave the variants and keep the best run, which damps but cannot remove the
effect of other processes competing for the same cores.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch
from PIL import Image
from scipy.signal import resample_poly

from streambind.features import (
    audio_window,
    audio_windows,
    depth_frame,
    depth_frames,
    thermal_frame,
    thermal_frames,
    vision_window,
    vision_windows,
)
from streambind.features.audio import (
    AUDIO_MEAN,
    AUDIO_STD,
    FFT_SIZE,
    FRAME_LENGTH,
    FRAME_SHIFT,
    LOG_FLOOR,
    LOW_FREQ,
    NUM_MEL_BINS,
    PREEMPHASIS,
    TARGET_FRAMES,
    TARGET_RATE,
)
from streambind.features.vision import CLIP_MEAN, CLIP_STD, IMAGE_SIZE

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bench features``."""
    parser.add_argument("--batch-size", type=int, default=64, help="clips per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; best is kept")
    parser.add_argument(
        "--sample-rates",
        default="16000,48000",
        help="comma-separated audio clip rates (Hz) to benchmark",
    )
    parser.add_argument("--width", type=int, default=640, help="vision frame width")
    parser.add_argument("--height", type=int, default=480, help="vision frame height")
    parser.add_argument("--frames", type=int, default=4, help="frames per vision clip")
    parser.add_argument("--plane-width", type=int, default=160, help="depth/thermal width")
    parser.add_argument("--plane-height", type=int, default=120, help="depth/thermal height")


# ---------------------------------------------------------------- straightforward audio


def _mel_banks_per_call(rate: int) -> torch.Tensor:
    # Rebuilt on every call, as torchaudio's kaldi.fbank does (get_mel_banks inside fbank).
    def mel(f: torch.Tensor) -> torch.Tensor:
        return 1127.0 * torch.log1p(f / 700.0)

    n_fft_bins = FFT_SIZE // 2
    mel_low = mel(torch.tensor(LOW_FREQ, dtype=torch.float64))
    mel_high = mel(torch.tensor(rate / 2.0, dtype=torch.float64))
    delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)
    k = torch.arange(NUM_MEL_BINS, dtype=torch.float64).unsqueeze(1)
    left, centre, right = mel_low + k * delta, mel_low + (k + 1) * delta, mel_low + (k + 2) * delta
    freqs = mel(rate / FFT_SIZE * torch.arange(n_fft_bins, dtype=torch.float64)).unsqueeze(0)
    up, down = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1)).to(torch.float32)


def reference_audio_clip(clip: np.ndarray, rate: int) -> torch.Tensor:
    """One clip, the straightforward way: Tensor[1, 128, 204]."""
    if rate != TARGET_RATE:
        ratio = Fraction(TARGET_RATE, rate)
        clip = resample_poly(clip, ratio.numerator, ratio.denominator).astype(np.float32)
    wave = torch.from_numpy(np.ascontiguousarray(clip))
    wave = wave - wave.mean()
    n_frames = 1 + (wave.shape[0] - FRAME_LENGTH) // FRAME_SHIFT
    frames = wave.as_strided((n_frames, FRAME_LENGTH), (FRAME_SHIFT, 1))
    frames = frames - frames.mean(dim=1, keepdim=True)
    shifted = torch.nn.functional.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
    frames = frames - PREEMPHASIS * shifted[:, :-1]
    frames = frames * torch.hann_window(FRAME_LENGTH, periodic=False)
    frames = torch.nn.functional.pad(frames, (0, FFT_SIZE - FRAME_LENGTH))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    fbank = torch.mm(power, _mel_banks_per_call(TARGET_RATE).T)
    fbank = torch.max(fbank, torch.tensor(LOG_FLOOR)).log().T
    pad = TARGET_FRAMES - fbank.shape[1]
    fbank = torch.nn.functional.pad(fbank, (0, pad)) if pad > 0 else fbank[:, :TARGET_FRAMES]
    return ((fbank - AUDIO_MEAN) / AUDIO_STD).unsqueeze(0)


# ---------------------------------------------------------------- straightforward vision


def reference_vision_frame(frame: np.ndarray) -> torch.Tensor:
    """One frame, the way the reference does it with PIL and torchvision-style steps."""
    image = Image.fromarray(frame).convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(IMAGE_SIZE * long / short)
    size = (IMAGE_SIZE, new_long) if w <= h else (new_long, IMAGE_SIZE)
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BICUBIC)
    left = int(round((size[0] - IMAGE_SIZE) / 2.0))
    top = int(round((size[1] - IMAGE_SIZE) / 2.0))
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).contiguous()
    tensor = tensor.to(torch.float32).div(255)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (tensor - mean) / std


def reference_vision_clip(frames: list[np.ndarray]) -> torch.Tensor:
    """One clip: first and last frame, stacked to Tensor[3, 2, 224, 224]."""
    return torch.stack([reference_vision_frame(frames[0]), reference_vision_frame(frames[-1])], 1)


# ---------------------------------------------------------------- straightforward depth, thermal


def _pillow_plane(plane: np.ndarray, resample: int) -> np.ndarray:
    # Shorter side to 224 with Pillow (mode F), centre crop: the geometry of vision.
    image = Image.fromarray(plane)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(IMAGE_SIZE * long / short)
    size = (IMAGE_SIZE, new_long) if w <= h else (new_long, IMAGE_SIZE)
    if size != (w, h):
        image = image.resize(size, resample)
    left = int(round((size[0] - IMAGE_SIZE) / 2.0))
    top = int(round((size[1] - IMAGE_SIZE) / 2.0))
    return np.asarray(image)[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]


def reference_depth_frame(mm: np.ndarray) -> torch.Tensor:
    """One ``u16_mm`` frame, numpy and Pillow step by step (default DepthParams)."""
    metres = mm.astype(np.float32) / 1000.0
    metres[metres <= 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        disparity = (518.857901 * 0.075) / metres
        disparity = np.where(np.isnan(metres) | (metres > 100.0), 0.0, disparity)
    scaled = (np.minimum(disparity.astype(np.float32), 75.0) / 75.0).astype(np.float32)
    plane = _pillow_plane(scaled, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.ascontiguousarray(plane)).clamp(0.0, 1.0).unsqueeze(0)


def reference_thermal_frame(raw: np.ndarray) -> torch.Tensor:
    """One ``u16`` frame, per-frame min-max then Pillow bicubic (mode F), clipped."""
    values = raw.astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    plane = np.clip(_pillow_plane(scaled, Image.Resampling.BICUBIC), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(plane)).unsqueeze(0)


# ---------------------------------------------------------------- timing


def _best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function; runs are interleaved so that load from other
    processes during the benchmark hits every variant alike."""
    for fn in fns:
        fn()  # warm-up: caches, thread pool, allocator
    best = [math.inf] * len(fns)
    for _ in range(max(1, repeats)):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _audio_batch(batch: int, rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(2 * rate) / rate
    freqs = rng.uniform(100, min(7000, rate / 2 - 500), size=(batch, 1))
    clips = 0.3 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal((batch, t.size))
    return clips.astype(np.float32)


def _vision_batch(batch: int, frames: int, width: int, height: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [[np.roll(base, shift=7 * i + j, axis=1) for j in range(frames)] for i in range(batch)]


def _row(name: str, seconds: float, clips: int, batched: float) -> str:
    return (
        f"  {name:<22} {seconds * 1e3:9.1f} ms {clips / seconds:9.1f} clips/s"
        f"   batched speed-up {seconds / batched:5.2f}x\n"
    )


def _report(name: str, unit: str, n: int, seconds: tuple[float, float, float],
            diff: float) -> None:
    """The three timings (batched, per-item reference, per-item streambind), the largest
    difference from the reference and the ratio line."""
    batched, ref, own = seconds
    out = sys.stdout
    out.write(_row("batched", batched, n, batched))
    out.write(_row(f"per-{unit} reference", ref, n, batched))
    out.write(_row(f"per-{unit} streambind", own, n, batched))
    out.write(f"  max |batched - reference| = {diff:.2e}\n")
    out.write(f"  RATIO {name} batched / per-{unit} reference loop: {ref / batched:.2f}x\n")


def _bench_audio(b: int, rate: int, repeats: int) -> None:
    out = sys.stdout
    clips = _audio_batch(b, rate)
    batched, ref, own = _best_times(
        [
            lambda: audio_windows(clips, rate),
            lambda: [reference_audio_clip(c, rate) for c in clips],
            lambda: [audio_window(c, rate) for c in clips],
        ],
        repeats,
    )
    check = audio_windows(clips[:4], rate)
    diff = max(
        float((check[i] - reference_audio_clip(clips[i], rate)).abs().max())
        for i in range(len(check))
    )
    out.write(f"audio: {b} clips x 2 s at {rate} Hz -> [{b}, 1, 128, 204]\n")
    _report("audio", "clip", b, (batched, ref, own), diff)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print one block per modality; returns 0."""
    b = args.batch_size
    out = sys.stdout
    out.write(
        f"streambind bench features: batch {b}, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, best of {args.repeats}\n"
    )
    for rate in (int(r) for r in str(args.sample_rates).split(",") if r.strip()):
        _bench_audio(b, rate, args.repeats)

    windows = _vision_batch(b, args.frames, args.width, args.height)
    batched, ref, own = _best_times(
        [
            lambda: vision_windows(windows),
            lambda: [reference_vision_clip(w) for w in windows],
            lambda: [vision_window(w) for w in windows],
        ],
        args.repeats,
    )
    check = vision_windows(windows[:4])
    diff = max(
        float((check[i] - reference_vision_clip(windows[i])).abs().max()) for i in range(len(check))
    )
    out.write(
        f"vision: {b} clips x {args.frames} frames {args.width}x{args.height} "
        f"(first+last used) -> [{b}, 3, 2, 224, 224]\n"
    )
    _report("vision", "clip", b, (batched, ref, own), diff)
    _bench_planes(b, args.plane_width, args.plane_height, args.repeats)
    return 0


def _bench_planes(b: int, width: int, height: int, repeats: int) -> None:
    out = sys.stdout
    rng = np.random.default_rng(0)
    depth = [rng.integers(0, 6000, (height, width), dtype=np.uint16) for _ in range(b)]
    thermal = [rng.integers(0, 2**14, (height, width), dtype=np.uint16) for _ in range(b)]
    cases = [
        ("depth", "u16_mm", depth, depth_frames, depth_frame, reference_depth_frame),
        ("thermal", "u16", thermal, thermal_frames, thermal_frame, reference_thermal_frame),
    ]
    for name, encoding, frames, batch_fn, one_fn, ref_fn in cases:
        pairs = [(frame, encoding) for frame in frames]
        batched, ref, own = _best_times(
            [
                lambda batch_fn=batch_fn, pairs=pairs: batch_fn(pairs),
                lambda ref_fn=ref_fn, frames=frames: [ref_fn(f) for f in frames],
                lambda one_fn=one_fn, pairs=pairs: [one_fn(*p) for p in pairs],
            ],
            repeats,
        )
        check = batch_fn(pairs[:4])
        diff = max(float((row - ref_fn(frame)).abs().max())
                   for row, frame in zip(check, frames, strict=False))
        out.write(f"{name}: {b} {encoding} frames {width}x{height} -> [{b}, 1, 224, 224]\n")
        _report(name, "frame", b, (batched, ref, own), diff)
