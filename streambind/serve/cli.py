"""Run the whole pipeline on Ray Serve: ingest consumers, GPU embedder, labelled events.

    streambind run --bootstrap HOST:PORT --labels labels.yaml [--model huge|tiny|PATH]

Flags override the config file, which environment variables override in turn
(``STREAMBIND_<SECTION>__<KEY>``). Runs until interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from streambind.config import AppConfig, load_config
from streambind.errors import StreambindError
from streambind.labels import LabelSet

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind run``."""
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
    parser.add_argument("--labels", help="label set file (YAML or JSON)")
    parser.add_argument("--model", help="huge, tiny, or a path to an official .pth file")
    parser.add_argument("--group", help="Kafka consumer group (default streambind)")
    parser.add_argument("--config", help="streambind YAML config file")
    parser.add_argument("--ray-address", help="connect to this Ray cluster instead of a local one")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")


def config_from_args(args: argparse.Namespace) -> AppConfig:
    """The config file with the command-line flags applied on top."""
    overrides: dict[str, Any] = {}
    if args.bootstrap:
        overrides.setdefault("kafka", {})["bootstrap_servers"] = args.bootstrap
    if args.group:
        overrides.setdefault("kafka", {})["group_id"] = args.group
    if args.labels:
        overrides["labels"] = {"file": args.labels}
    if args.model:
        overrides["model"] = {"source": args.model}
    config = load_config(args.config, overrides=overrides)
    if not config.kafka.get("bootstrap_servers"):
        raise StreambindError("no Kafka bootstrap servers: pass --bootstrap or set kafka.")
    if config.labels.file:
        LabelSet.from_file(config.labels.file)  # fail fast, before Ray starts
    return config


def run(args: argparse.Namespace) -> int:
    """Deploy on Ray Serve and block until interrupted."""
    import ray
    from ray import serve

    from streambind.serve.app import INGEST_APP, INGEST_DEPLOYMENT, deploy

    try:
        config = config_from_args(args)
    except StreambindError as exc:
        sys.stderr.write(f"streambind run: {exc}\n")
        return 2
    ray.init(address=args.ray_address, num_cpus=args.num_cpus, log_to_driver=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        deploy(config)
        status = serve.get_deployment_handle(INGEST_DEPLOYMENT, INGEST_APP).status.remote()
        info = status.result(timeout_s=120)
        sys.stdout.write(
            f"streambind running: model={info['model']} group={config.kafka.get('group_id')} "
            f"metrics=http://127.0.0.1:{info['metrics_port']}/metrics (Ctrl-C stops)\n"
        )
        sys.stdout.flush()
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
