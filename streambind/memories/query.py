"""Query embedding: text, audio files, images and stored windows into the stream's space.

Queries go through the same featurizers (``streambind.features``) and model
(``streambind.model``, CLIP BPE ``tokenize``) as the stream, so a query vector lives in the
same space as the stored windows. Several items combine as ImageBind's embedding arithmetic
does: the normalized sum of the items' normalized embeddings, each scaled by its weight
(a negative weight subtracts a concept: ``--minus "indoors"``).
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streambind.errors import StreambindError
from streambind.memories.store import unit

KINDS = ("text", "audio", "image", "like", "vector")
MAX_QUERY_FILE_BYTES = 64 * 1024 * 1024
AUDIO_CLIP_S = 2.0
MAX_AUDIO_CLIPS = 16


class QueryError(StreambindError):
    """A query item cannot be read or embedded."""


@dataclass(frozen=True)
class QueryItem:
    """One term of a query: ``kind`` in :data:`KINDS`, its value, and a weight (< 0 subtracts).

    ``value``: the text; a file path or the file's bytes (audio, image); a window id (like);
    a (D,) array (vector).
    """

    kind: str
    value: object
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"unknown query kind {self.kind!r}; expected one of {KINDS}")
        if not np.isfinite(self.weight) or self.weight == 0:
            raise QueryError(f"query weight must be finite and non-zero, got {self.weight}")


def parse_weighted(text: str) -> tuple[str, float]:
    """``"a dog barking::0.5"`` -> ("a dog barking", 0.5); no suffix -> weight 1."""
    head, sep, tail = text.rpartition("::")
    if sep:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, 1.0


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """(D,) unit vector: normalize(sum_i w_i * normalize(v_i))."""
    if not vectors:
        raise QueryError("a query needs at least one item")
    stacked = unit(np.stack([np.asarray(v, dtype=np.float32) for v in vectors]))  # (N, D)
    total = (np.asarray(weights, dtype=np.float32)[:, None] * stacked).sum(axis=0)
    if not np.isfinite(total).all() or float(np.linalg.norm(total)) < 1e-6:
        raise QueryError("the query's items cancel out (weighted sum is zero)")
    return unit(total)


def _read(value: object, what: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    else:
        path = Path(str(value))
        try:
            if path.stat().st_size > MAX_QUERY_FILE_BYTES:
                raise QueryError(f"{what} file {path} is larger than {MAX_QUERY_FILE_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise QueryError(f"cannot read {what} file {path}: {exc}") from exc
    if len(data) > MAX_QUERY_FILE_BYTES:
        raise QueryError(f"{what} is larger than {MAX_QUERY_FILE_BYTES} bytes")
    return data


def read_wav(value: object) -> tuple[np.ndarray, float]:
    """(float32 mono samples in [-1, 1], sample rate) of a PCM ``.wav`` (8/16/32-bit)."""
    from streambind.features import to_mono

    try:
        with wave.open(io.BytesIO(_read(value, "audio")), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise QueryError(f"not a PCM .wav file: {exc}") from exc
    dtypes = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if width not in dtypes or channels < 1 or rate <= 0:
        raise QueryError(f"unsupported .wav: {width * 8}-bit, {channels} channels, {rate} Hz")
    samples = np.frombuffer(frames, dtype=dtypes[width])
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
    if len(samples) == 0:
        raise QueryError(".wav file holds no samples")
    return to_mono(samples if channels > 1 else samples[:, 0]), float(rate)


def read_image(value: object) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file (JPEG, PNG, anything Pillow reads)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(_read(value, "image"))) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot decode image: {exc}") from exc


def audio_clips(samples: np.ndarray, rate: float) -> np.ndarray:
    """(C, N) clips of :data:`AUDIO_CLIP_S` covering the file (at most :data:`MAX_AUDIO_CLIPS`)."""
    n = max(1, int(round(AUDIO_CLIP_S * rate)))
    if len(samples) <= n:
        return np.pad(samples, (0, n - len(samples)))[None, :]
    starts = np.linspace(0, len(samples) - n, num=min(MAX_AUDIO_CLIPS, -(-len(samples) // n)))
    return np.stack([samples[int(s): int(s) + n] for s in starts])


class QueryEmbedder:
    """Embeds query items with a model runner (``streambind.serve.embedder.ModelRunner``).

    ``lookup`` maps a window id to its stored vector (for ``like`` items).
    """

    def __init__(self, runner: object, lookup: Callable[[str], np.ndarray] | None = None):
        self.runner = runner
        self.lookup = lookup

    def embed_item(self, item: QueryItem) -> np.ndarray:
        """(D,) unit embedding of one item."""
        import torch

        from streambind import features

        if item.kind == "vector":
            return unit(np.asarray(item.value, dtype=np.float32).reshape(-1))
        if item.kind == "like":
            if self.lookup is None:
                raise QueryError("no store to look a window up in")
            return unit(self.lookup(str(item.value)))
        if item.kind == "text":
            text = str(item.value).strip()
            if not text:
                raise QueryError("empty text query")
            out = self.runner.embed_texts([text])  # (1, D)
        elif item.kind == "audio":
            samples, rate = read_wav(item.value)
            batch = features.audio_windows(audio_clips(samples, rate), rate)  # (C, 1, 128, 204)
            out = self.runner.embed("audio", batch).mean(dim=0, keepdim=True)
        else:  # image: one frame used as both frames of a clip, as the stream does
            frame = read_image(item.value)
            out = self.runner.embed("vision", features.vision_windows([[frame]]))
        return unit(torch.as_tensor(out).float().numpy()[0])

    def embed(self, items: Sequence[QueryItem]) -> np.ndarray:
        """(D,) the combined query vector."""
        return combine([self.embed_item(i) for i in items], [i.weight for i in items])
