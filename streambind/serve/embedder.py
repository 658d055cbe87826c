"""The embedder: the ImageBind model on one device, with dynamic batching per modality.

``ModelRunner`` holds the model and embeds whole batches on the calling thread: it is the
in-process embedder (benchmarks, the streaming core without Ray). ``EmbedderServer`` adds
the Ray Serve API of the ``Embedder`` deployment (``streambind.serve.app``): callers send
one window at a time; ``serve.batch`` gathers the concurrent requests of each
modality into one forward pass, so the GPU sees full batches while ingest replicas stay
simple. Batch size and wait are tunable at runtime through ``reconfigure``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ray import serve

from streambind import metrics
from streambind.config import BatchSettings, ModelSettings
from streambind.errors import ServeError
from streambind.model.dtypes import DTYPES

logger = logging.getLogger(__name__)

TEXT = "text"


def resolve_device_dtype(settings: ModelSettings) -> tuple[torch.device, torch.dtype]:
    """``auto`` means CUDA in bf16 when a GPU is visible, else CPU in fp32."""
    device_name = settings.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    dtype_name = settings.dtype
    if dtype_name == "auto":
        dtype_name = "bf16" if device.type == "cuda" else "fp32"
    if dtype_name not in DTYPES:
        raise ServeError(f"unknown dtype {dtype_name!r}; use one of {sorted(DTYPES)}")
    if device.type == "cpu" and dtype_name != "fp32":
        logger.warning("%s on CPU is slow and inexact; consider fp32", dtype_name)
    return device, DTYPES[dtype_name]


def unit_embeddings(outputs: torch.Tensor) -> torch.Tensor:
    """Joint-space embeddings without the per-modality logit scale: unit norm, fp32, CPU."""
    return torch.nn.functional.normalize(outputs.float(), dim=-1).cpu()


def model_name(source: str) -> str:
    """The ``model`` field of events: what produced the embedding."""
    names = {
        "huge": "imagebind_huge",
        "tiny": "imagebind_tiny_untrained",
        "huge-untrained": "imagebind_huge_untrained",
    }
    return names.get(source, Path(source).stem)


class ModelRunner:
    """Holds the model (all towers or a subset) and embeds batches and prompts in-process."""

    def __init__(self, model: Mapping[str, Any] | ModelSettings | None = None):
        from streambind.model import load_imagebind

        settings = model if isinstance(model, ModelSettings) else ModelSettings(**(model or {}))
        self.device, self.dtype = resolve_device_dtype(settings)
        self.model_name = model_name(settings.source)
        self.model = load_imagebind(
            settings.source,
            cache_dir=settings.cache_dir,
            device=self.device,
            dtype=self.dtype,
            modalities=settings.modalities,
        )
        self.modalities = tuple(self.model.modalities)
        logger.info(
            "embedder ready: model=%s towers=%s device=%s dtype=%s",
            self.model_name,
            ",".join(self.modalities),
            self.device,
            self.dtype,
        )

    def check_health(self) -> None:
        """Ray Serve health probe: fails when the accelerator is unusable."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def info(self) -> dict[str, Any]:
        """Model name, towers, joint-space dimension, device and dtype."""
        return {
            "model": self.model_name,
            "modalities": list(self.modalities),
            "embed_dim": self.model.embed_dim,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def forward(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, D) of one batch, on the calling thread."""
        started_s = time.perf_counter()
        inputs = batch.to(self.device, non_blocking=True)
        if inputs.is_floating_point():
            inputs = inputs.to(self.dtype)
        with torch.inference_mode():
            outputs = self.model({modality: inputs})[modality]  # (B, D)
        embeddings = unit_embeddings(outputs)
        metrics.EMBED_SECONDS.labels(modality).observe(time.perf_counter() - started_s)
        metrics.BATCH_SIZE.labels(modality).observe(len(batch))
        return embeddings

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """The streaming core's ``Embedder`` protocol: unit embeddings (B, D) of a batch."""
        if modality not in self.modalities:
            raise ServeError(f"this model has no {modality!r} tower ({self.modalities})")
        return self.forward(modality, batch)

    def embed_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings (N, D) of the prompts."""
        from streambind.model import tokenize

        if TEXT not in self.modalities:
            raise ServeError("this model has no text tower")
        return self.forward(TEXT, tokenize(list(prompts)))


def _windows_in(batches: list[torch.Tensor]) -> int:
    # Serve counts a request as its number of windows, so max_batch_size bounds the forward.
    return sum(len(batch) for batch in batches)


class EmbedderServer:
    """The ``Embedder`` deployment: ``embed(modality, batch)`` requests, merged per modality.

    Each request carries the (B, ...) windows one ingest replica has ready; ``serve.batch``
    merges the requests of all ingest replicas up to ``max_batch_size`` windows (counted by
    ``_windows_in``), runs one forward pass and hands each caller its rows back.
    """

    def __init__(self, model: Mapping[str, Any] | ModelSettings | None = None):
        self.runner = ModelRunner(model)
        self._batchers = {
            "vision": self._embed_vision,
            "audio": self._embed_audio,
            "depth": self._embed_depth,
            "thermal": self._embed_thermal,
            "imu": self._embed_imu,
        }

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Apply ``{"batching": {modality: {max_batch_size, batch_wait_timeout_s}}}``."""
        for modality, raw in (user_config.get("batching") or {}).items():
            batcher = self._batchers.get(modality)
            if batcher is None:
                raise ServeError(f"no batching for modality {modality!r}")
            settings = raw if isinstance(raw, BatchSettings) else BatchSettings(**raw)
            batcher.set_max_batch_size(settings.max_batch_size)
            batcher.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
            logger.info("batching %s: %s", modality, settings)

    def check_health(self) -> None:
        """Ray Serve health probe: fails when the accelerator is unusable."""
        self.runner.check_health()

    def info(self) -> dict[str, Any]:
        """Model name, towers, joint-space dimension, device and dtype."""
        return self.runner.info()

    async def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, D) of a batch of featurized windows of one modality."""
        if modality not in self.runner.modalities or modality not in self._batchers:
            raise ServeError(f"this embedder has no {modality!r} tower ({self.runner.modalities})")
        return await self._batchers[modality](batch)

    async def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings (N, D) of the prompts (label sets; not on the hot path)."""
        return await asyncio.to_thread(self.runner.embed_texts, prompts)

    async def _forward_merged(self, modality: str, batches: list[torch.Tensor]) -> list:
        # The forward runs on a worker thread so that the replica keeps accepting requests
        # (and other modalities' batches) while the accelerator is busy.
        merged = torch.cat(batches) if len(batches) > 1 else batches[0]
        embeddings = await asyncio.to_thread(self.runner.forward, modality, merged)
        return list(embeddings.split([len(batch) for batch in batches]))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_vision(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return await self._forward_merged("vision", batches)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_audio(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return await self._forward_merged("audio", batches)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_depth(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return await self._forward_merged("depth", batches)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_thermal(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return await self._forward_merged("thermal", batches)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_imu(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return await self._forward_merged("imu", batches)
