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

import torch
from ray import serve
from ray.serve import Application

from streambind.config import SECRET_KEYS, AppConfig, MetricsSettings, load_config
from streambind.serve.embedder import EmbedderServer, _windows_in
from streambind.serve.ingest import IngestReplica
from streambind.serve.replica import (
    EMBEDDER_APP,
    EMBEDDER_DEPLOYMENT,
    INGEST_APP,
    INGEST_DEPLOYMENT,
    embedder_handle,
    start_replica_metrics,
)

__all__ = [
    "EMBEDDER_APP",
    "EMBEDDER_DEPLOYMENT",
    "INGEST_APP",
    "INGEST_DEPLOYMENT",
    "build_embedder_app",
    "build_ingest_app",
    "deploy",
    "embedder_handle",
]

logger = logging.getLogger(__name__)


class EmbedderReplica(EmbedderServer):
    """The embedder as a Serve replica: the model plus this process's metrics endpoint.

    A bound model (``--model DIR`` of ``streambind bind``) has towers beyond the six: their
    requests are batched by one more ``serve.batch`` queue (one forward per tower in it),
    and ``info`` lists their configs, so the ingest replicas consume ``sensors.<name>`` and
    window it as the tower's input spec says without reading the model directory.
    """

    def __init__(self, model: Mapping[str, Any], metrics: Mapping[str, Any]):
        super().__init__(model)
        self.metrics_port = start_replica_metrics(MetricsSettings(**metrics))
        self._bound = {cfg.modality: cfg for cfg in self.runner.model.config.extra
                       if cfg.modality in self.runner.modalities}

    def info(self) -> dict[str, Any]:
        """The embedder's info plus ``bound_towers``: name -> tower config (JSON)."""
        from streambind.model.kinds import tower_config_to_dict

        return {**super().info(),
                "bound_towers": {n: tower_config_to_dict(c) for n, c in self._bound.items()}}

    async def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, D); a bound tower's batches share one batching queue."""
        if modality in self._bound:
            return await self._embed_bound(batch, modality)
        return await super().embed(modality, batch)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_windows_in)
    async def _embed_bound(self, batches: list[torch.Tensor], modalities: list[str]) -> list:
        out: list[torch.Tensor | None] = [None] * len(batches)
        for name in dict.fromkeys(modalities):  # one forward per tower, in arrival order
            idx = [i for i, m in enumerate(modalities) if m == name]
            parts = await self._forward_merged(name, [batches[i] for i in idx])
            for i, part in zip(idx, parts, strict=True):
                out[i] = part
        return out


def _config_from_args(args: Mapping[str, Any]) -> AppConfig:
    if isinstance(args.get("config_dict"), Mapping):
        return AppConfig.from_dict(args["config_dict"])
    return load_config(args.get("config"), overrides=args.get("overrides"))


def build_embedder_app(args: Mapping[str, Any] | None = None) -> Application:
    """Serve application builder for the embedder (``import_path`` target).

    The embedder replicas get the model and metrics settings only: no Kafka settings."""
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
    """Serve application builder for the ingest consumers (``import_path`` target).

    The replicas are bound to the config *without* its secrets (Ray keeps deployment
    arguments in its control store): each replica reads them from its own environment.
    """
    config = _config_from_args(args or {})
    embedder_app = (args or {}).get("embedder_app", EMBEDDER_APP)
    carried = sorted(key for key in SECRET_KEYS if config.kafka.get(key) is not None)
    if carried:
        logger.info(
            "not passing %s to the ingest replicas: each reads it from its own environment "
            "(STREAMBIND_KAFKA__<KEY>) or the file kafka.<key>_file names",
            ", ".join(carried),
        )
    deployment = serve.deployment(IngestReplica).options(
        name=INGEST_DEPLOYMENT,
        num_replicas=config.ingest.num_replicas,
        ray_actor_options={"num_cpus": config.ingest.num_cpus},
        health_check_period_s=5,
    )
    return deployment.bind(config.public_dict(), embedder_app)


def deploy(config: AppConfig) -> None:
    """Deploy both applications on the Ray cluster this process is connected to.

    Serve runs without its HTTP proxy: neither application serves HTTP routes. Secrets in
    ``config`` are not passed on (see ``build_ingest_app``).
    """
    serve.start(proxy_location="Disabled")
    doc = config.public_dict()
    serve.run(build_embedder_app({"config_dict": doc}), name=EMBEDDER_APP, route_prefix=None)
    serve.run(build_ingest_app({"config_dict": doc}), name=INGEST_APP, route_prefix=None)
    logger.info("applications %s and %s running", EMBEDDER_APP, INGEST_APP)
