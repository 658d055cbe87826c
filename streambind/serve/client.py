"""The ingest side of the embedder: the streaming core's ``Embedder`` over a Serve handle.

Each batch of windows goes to the ``Embedder`` deployment as one request; Serve's
per-modality batching merges the requests of every ingest replica into full GPU batches.
A request that fails because a replica died (or is being replaced) is retried with backoff
until it succeeds or the client is stopped: the windows stay unacknowledged meanwhile,
their offsets uncommitted, so no window is lost when an embedder replica is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch

from streambind.errors import ServeError

logger = logging.getLogger(__name__)


class ServeEmbedderClient:
    """Implements ``streambind.stream.embed.Embedder`` by calling the Serve deployment."""

    def __init__(
        self,
        handle: Any,
        *,
        request_timeout_s: float = 60.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        stop: threading.Event | None = None,
    ):
        self._handle = handle
        self._request_timeout_s = request_timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stop = stop or threading.Event()
        self.retries = 0

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """(B, D) unit embeddings of a batch; one Serve request, merged server-side."""
        return self._call("embed", modality, batch)

    def embed_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit text embeddings (label prompts)."""
        return self._call("embed_text", list(prompts))

    def info(self) -> dict[str, Any]:
        """The embedder's model name, towers and dimension."""
        return self._call("info")

    def _call(self, method: str, *args: Any) -> Any:
        backoff_s = self._backoff_s
        while True:
            try:
                return getattr(self._handle, method).remote(*args).result(
                    timeout_s=self._request_timeout_s
                )
            except ServeError:
                raise  # the embedder refused the request itself: retrying can't help
            except Exception as exc:  # replica death, timeout, restart: all transient
                self.retries += 1
                logger.warning(
                    "%s request failed (%s: %s); retrying in %.1f s",
                    method,
                    type(exc).__name__,
                    str(exc)[:200],
                    backoff_s,
                )
            if self._stop.wait(backoff_s):
                raise ServeError(f"stopped while retrying {method}")
            backoff_s = min(backoff_s * 2, self._max_backoff_s)

    def stop(self) -> None:
        """Abandon retries (the caller is shutting down)."""
        self._stop.set()
