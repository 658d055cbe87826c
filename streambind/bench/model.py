"""Forward throughput of each ImageBind tower, fused SDPA attention vs reference-style attention.

The reference path is the attention written out (q @ k^T, softmax, @ v), the computation of
the reference's ``nn.MultiheadAttention``. Both paths run on the same weights in one process;
the ratio column is SDPA throughput over reference throughput (> 1: SDPA is faster), and the
last column the largest relative difference between the two paths' embeddings. Note that
recent PyTorch routes ``nn.MultiheadAttention(need_weights=False)`` through SDPA itself, so
the reference path here is the explicit computation (the reference as written, and what it
runs on older PyTorch or with ``need_weights=True``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from streambind.model.config import MODEL_MODALITIES, ImageBindConfig
from streambind.model.dtypes import DTYPES
from streambind.model.imagebind import ImageBind
from streambind.model.layers import set_attention_impl
from streambind.model.tokenizer import tokenize
from streambind.model.towers import Tower

_PHRASES = ("a dog barking", "glass breaking in a quiet kitchen", "a person running upstairs",
            "rain on a window", "an engine idling")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind bench model`` options."""
    parser.add_argument("--preset", choices=("tiny", "huge", "huge-untrained"), default="tiny",
                        help="architecture, random weights (huge = huge-untrained here)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--iters", type=int, default=10,
                        help="timed forwards per tower and path (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards first")
    parser.add_argument("--modalities", nargs="+", choices=MODEL_MODALITIES,
                        default=list(MODEL_MODALITIES))


def synthetic_input(modality: str, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of model-shaped random input for one tower (token ids for text)."""
    if modality == "text":
        return tokenize([_PHRASES[i % len(_PHRASES)] for i in range(batch)])
    shape = {
        "vision": (batch, 3, 224, 224),
        "audio": (batch, 1, 128, 204),
        "depth": (batch, 1, 224, 224),
        "thermal": (batch, 1, 224, 224),
        "imu": (batch, 6, 2000),
    }[modality]
    return torch.randn(shape, generator=generator)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_tower(
    tower: Tower, x: torch.Tensor, iters: int, warmup: int
) -> tuple[float, float, float]:
    """Median seconds per forward with SDPA and with reference attention, and the largest
    relative difference between their embeddings.

    The two paths alternate forward by forward, and the median is reported, so a burst of
    load from other processes biases neither side.
    """
    device = tower.head.proj.weight.device
    times: dict[str, list[float]] = {"sdpa": [], "math": []}
    outs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for i in range(warmup + iters):
            for impl in ("sdpa", "math"):
                set_attention_impl(tower, impl)
                _sync(device)
                start = time.perf_counter()
                outs[impl] = tower(x)
                _sync(device)
                if i >= warmup:
                    times[impl].append(time.perf_counter() - start)
    set_attention_impl(tower, "sdpa")
    ref = outs["math"].float()
    diff = ((outs["sdpa"].float() - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
    return statistics.median(times["sdpa"]), statistics.median(times["math"]), diff


def build_model(preset: str, modalities, device: torch.device, dtype: str) -> ImageBind:
    """The preset's architecture with random weights (seeded), on ``device`` in ``dtype``."""
    config = ImageBindConfig.tiny() if preset == "tiny" else ImageBindConfig.huge()
    with torch.random.fork_rng(devices=[]), device:
        torch.manual_seed(0)  # random weights: throughput does not depend on their values
        model = ImageBind(config, modalities)  # initialised on the device: fast on a GPU
    return model.to(dtype=DTYPES[dtype]).eval()


def measure_tower(
    model: ImageBind, modality: str, batch_size: int, iters: int, warmup: int,
    generator: torch.Generator,
) -> dict[str, float | int | str]:
    """One row of the table: tokens per item, items/s of both attention paths, their ratio,
    the largest relative difference of their embeddings, and peak accelerator memory."""
    tower = model.towers[modality]
    device = model.device
    x = synthetic_input(modality, batch_size, generator).to(device)
    with torch.inference_mode():
        tokens = tower.stem(x.to(model.dtype) if x.is_floating_point() else x).shape[1]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_sdpa, t_ref, diff = compare_tower(tower, x, iters, warmup)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {
        "tower": modality, "batch": batch_size, "tokens": int(tokens),
        "sdpa_items_per_s": batch_size / t_sdpa, "reference_items_per_s": batch_size / t_ref,
        "sdpa_over_reference": t_ref / t_sdpa, "max_rel_diff": diff,
        "peak_memory_gib": peak / 2**30,
    }


def run(args: argparse.Namespace) -> int:
    """Benchmark each tower and write one table row per tower to stdout."""
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        sys.stderr.write("--batch-size and --iters must be >= 1, --warmup >= 0\n")
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write("--device cuda: no CUDA device is available\n")
        return 2
    device = torch.device(args.device)
    model = build_model(args.preset, args.modalities, device, args.dtype)
    generator = torch.Generator().manual_seed(0)

    w = sys.stdout.write
    w(f"streambind bench model: preset={args.preset} device={args.device} dtype={args.dtype} "
      f"batch={args.batch_size} iters={args.iters} warmup={args.warmup} "
      f"torch={torch.__version__} threads={torch.get_num_threads()}\n")
    w(f"{'tower':<8} {'tokens':>6} {'sdpa items/s':>13} {'reference items/s':>18} "
      f"{'sdpa/ref':>9} {'max rel diff':>13}\n")
    for modality in model.towers:
        row = measure_tower(model, modality, args.batch_size, args.iters, args.warmup,
                            generator)
        w(f"{modality:<8} {row['tokens']:>6} {row['sdpa_items_per_s']:>13.1f} "
          f"{row['reference_items_per_s']:>18.1f} {row['sdpa_over_reference']:>8.2f}x "
          f"{row['max_rel_diff']:>13.2e}\n")
    return 0
