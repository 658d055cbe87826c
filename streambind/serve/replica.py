"""What both Serve applications' replicas share: application names, the embedder handle and
the per-replica metrics endpoint. Kept apart from ``app`` (the builders) so that the
deployment modules import it without importing the builders that import them."""

from __future__ import annotations

import logging
from typing import Any

from streambind.config import MetricsSettings
from streambind.errors import ServeError

logger = logging.getLogger(__name__)

EMBEDDER_APP = "embedder"
EMBEDDER_DEPLOYMENT = "Embedder"
INGEST_APP = "ingest"
INGEST_DEPLOYMENT = "Ingest"


def start_replica_metrics(settings: MetricsSettings) -> int | None:
    """Serve /metrics from this replica on the first free port from ``settings.port``."""
    from streambind.metrics import start_metrics_server

    for port in range(settings.port, settings.port + settings.port_attempts):
        try:
            return start_metrics_server(port, settings.host)
        except OSError:
            continue
    logger.warning(
        "no free metrics port in %d-%d; this replica exports no metrics",
        settings.port,
        settings.port + settings.port_attempts - 1,
    )
    return None


def embedder_handle(app_name: str = EMBEDDER_APP) -> Any:
    """The embedder's deployment handle, or a ``ServeError`` naming what is missing."""
    from ray import serve

    try:
        return serve.get_deployment_handle(EMBEDDER_DEPLOYMENT, app_name=app_name)
    except Exception as exc:  # Serve raises several types for "not there yet"
        raise ServeError(f"embedder application {app_name!r} is not running: {exc}") from exc
