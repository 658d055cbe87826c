"""Ray Serve applications: ``embedder`` (GPU model) and ``ingest`` (Kafka consumers).

The two are separate applications so that each scales and upgrades on its own: the
ingest replicas find the embedder by name (``serve.get_deployment_handle``). Both are
built from the streambind config file, as ``deploy/serve_config.yaml`` does::

    import_path: streambind.serve.app:build_embedder_app
    args: {config: /etc/streambind/config.yaml}

Settings in a Serve config file's ``deployments`` section (replicas, ``num_gpus``,
``user_config.batching``) override those the builders take from the streambind config.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import Application

from streambind.config import AppConfig, MetricsSettings, load_config
from streambind.errors import ServeError
from streambind.serve.embedder import EmbedderServer

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


class EmbedderReplica(EmbedderServer):
    """The embedder as a Serve replica: the model plus this process's metrics endpoint."""

    def __init__(self, model: Mapping[str, Any], metrics: Mapping[str, Any]):
        super().__init__(model)
        self.metrics_port = start_replica_metrics(MetricsSettings(**metrics))


def _config_from_args(args: Mapping[str, Any]) -> AppConfig:
    if isinstance(args.get("config_dict"), Mapping):
        return AppConfig.from_dict(args["config_dict"])
    return load_config(args.get("config"), overrides=args.get("overrides"))


def build_embedder_app(args: Mapping[str, Any] | None = None) -> Application:
    """Serve application builder for the embedder (``import_path`` target)."""
    config = _config_from_args(args or {})
    settings = config.embedder
    options: dict[str, Any] = {
        "name": EMBEDDER_DEPLOYMENT,
        "ray_actor_options": {"num_gpus": settings.num_gpus, "num_cpus": settings.num_cpus},
        "max_ongoing_requests": settings.max_ongoing_requests,
        "user_config": {
            "batching": {m: dataclasses.asdict(b) for m, b in settings.batching.items()}
        },
        "health_check_period_s": 10,
    }
    if settings.autoscaling:
        options["autoscaling_config"] = dict(settings.autoscaling)
    else:
        options["num_replicas"] = settings.num_replicas
    deployment = serve.deployment(EmbedderReplica).options(**options)
    return deployment.bind(dataclasses.asdict(config.model), dataclasses.asdict(config.metrics))


def build_ingest_app(args: Mapping[str, Any] | None = None) -> Application:
    """Serve application builder for the ingest consumers (``import_path`` target)."""
    from streambind.serve.ingest import IngestReplica

    config = _config_from_args(args or {})
    embedder_app = (args or {}).get("embedder_app", EMBEDDER_APP)
    deployment = serve.deployment(IngestReplica).options(
        name=INGEST_DEPLOYMENT,
        num_replicas=config.ingest.num_replicas,
        ray_actor_options={"num_cpus": config.ingest.num_cpus},
        health_check_period_s=5,
    )
    return deployment.bind(config.to_dict(), embedder_app)


def deploy(config: AppConfig) -> None:
    """Deploy both applications on the Ray cluster this process is connected to.

    Serve runs without its HTTP proxy: neither application serves HTTP routes.
    """
    serve.start(proxy_location="Disabled")
    serve.run(build_embedder_app({"config_dict": config.to_dict()}), name=EMBEDDER_APP,
              route_prefix=None)
    serve.run(build_ingest_app({"config_dict": config.to_dict()}), name=INGEST_APP,
              route_prefix=None)
    logger.info("applications %s and %s running", EMBEDDER_APP, INGEST_APP)


def embedder_handle(app_name: str = EMBEDDER_APP) -> Any:
    """The embedder's deployment handle, or a ``ServeError`` naming what is missing."""
    try:
        return serve.get_deployment_handle(EMBEDDER_DEPLOYMENT, app_name=app_name)
    except Exception as exc:  # Serve raises several types for "not there yet"
        raise ServeError(f"embedder application {app_name!r} is not running: {exc}") from exc
