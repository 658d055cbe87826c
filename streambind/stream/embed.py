"""The embedder interface of the streaming core, featurization of closed windows, stand-ins.

The core hands each batch of featurized windows of one modality to an :class:`Embedder`.
The real one is the ImageBind model (in process or on Ray Serve); :class:`StandInEmbedder`
is a deterministic fake for tests of the core alone and :class:`NoopEmbedder` costs nothing,
for benchmarks of the core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from streambind import features
from streambind.stream import custom
from streambind.stream.assemble import (
    AudioInput,
    FrameInput,
    FramesInput,
    ImuInput,
    RawInput,
)


@runtime_checkable
class Embedder(Protocol):
    """Embeds a batch of one modality's model inputs into the joint space."""

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` (B, ...) featurized windows -> (B, D) embeddings."""
        ...


class StandInEmbedder:
    """Deterministic fake: each input's bytes are hashed into a unit vector of width ``dim``.

    The same window always gets the same vector; different windows almost surely differ.
    """

    def __init__(self, dim: int = 16, name: str = "stand-in") -> None:
        self.dim = dim
        self.name = name

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Hash every input (with its modality) into a fixed unit vector."""
        out = np.empty((batch.shape[0], self.dim), dtype=np.float32)
        arr = batch.detach().to(torch.float32).contiguous().numpy()
        for i in range(arr.shape[0]):
            digest = hashlib.sha256(modality.encode() + arr[i].tobytes()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            vec = rng.standard_normal(self.dim).astype(np.float32)
            out[i] = vec / np.linalg.norm(vec)
        return torch.from_numpy(out)


class NoopEmbedder:
    """Returns zeros of width ``dim`` without looking at the input (benchmarks)."""

    def __init__(self, dim: int = 16, name: str = "noop") -> None:
        self.dim = dim
        self.name = name

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Zeros, (B, dim)."""
        return torch.zeros(batch.shape[0], self.dim)


def featurize(modality: str, inputs: Sequence[RawInput]) -> torch.Tensor:
    """Featurize assembled windows of one modality into one batch tensor, in input order.

    audio -> (B, 1, 128, 204); imu -> (B, 6, 2000); vision -> (B, 3, 2, 224, 224);
    depth, thermal -> (B, 1, 224, 224); a sensor bound by ``streambind bind`` -> (B, *its
    tower's input shape), built exactly as bind built its training inputs
    (:func:`streambind.stream.custom.featurize_bound`). Raises ``FeatureError`` on bad data.
    """
    if modality == "vision":
        return features.vision_windows([list(_as(FramesInput, x).frames) for x in inputs])
    if modality in ("depth", "thermal"):
        fn = features.depth_frames if modality == "depth" else features.thermal_frames
        frames = [_as(FrameInput, x) for x in inputs]
        return fn([(f.frame, f.encoding) for f in frames])
    if modality not in ("audio", "imu"):
        if custom.bound_config(modality) is not None:
            return custom.featurize_bound(modality, inputs)
        raise ValueError(f"unknown modality {modality!r}")
    kind = AudioInput if modality == "audio" else ImuInput
    fn_batch = features.audio_windows if modality == "audio" else features.imu_windows
    items = [_as(kind, x) for x in inputs]
    out: list[torch.Tensor | None] = [None] * len(items)
    groups: dict[tuple[float, int], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault((item.sample_rate_hz, len(item.samples)), []).append(i)
    for (rate, _), idx in groups.items():
        batch = np.stack([items[i].samples for i in idx])
        result = fn_batch(batch, rate)
        for j, i in enumerate(idx):
            out[i] = result[j]
    return torch.stack([t for t in out if t is not None])


def _as(kind: type, value: object):  # type: ignore[no-untyped-def]
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value
