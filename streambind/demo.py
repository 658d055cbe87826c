"""The whole pipeline on one machine, with a live table of events.

Starts the embedded broker, the simulator (``streambind simulate`` in a subprocess) and
the pipeline on a local Ray, then shows the latest labels per device and modality,
refreshed every second, with the metrics URL. Ctrl-C (or ``--duration``) stops it all.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)

DEMO_LABELS = {
    "name": "demo",
    "version": 1,
    "top_k": 2,
    "labels": [
        {"name": "people talking", "prompts": ["people talking", "a conversation"]},
        {"name": "glass breaking", "prompts": ["glass breaking"]},
        {"name": "dog barking", "prompts": ["a dog barking"]},
        {"name": "music", "prompts": ["music playing"]},
        {"name": "walking", "prompts": ["a person walking"]},
        {"name": "person falling", "prompts": ["a person falling down"]},
        {"name": "empty room", "prompts": ["an empty room", "silence"]},
    ],
}
UNTRAINED_BANNER = (
    "NOTE: the official ImageBind huge weights are not in the cache ({path}), so this demo\n"
    "runs the UNTRAINED tiny model: the pipeline is real, the labels carry no meaning.\n"
    "Fetch the weights (CC BY-NC-SA 4.0) with `python -m streambind.model.download`.\n"
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind demo``."""
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    parser.add_argument("--model", help="huge, tiny or a checkpoint path (default: huge if cached)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")


def choose_model(requested: str | None, out: TextIO) -> str:
    """The model to run: as requested, else huge when its weights are cached, else tiny."""
    from streambind.model import checkpoint_cache_path, huge_checkpoint_available

    if requested:
        return requested
    if huge_checkpoint_available():
        return "huge"
    out.write(UNTRAINED_BANNER.format(path=checkpoint_cache_path()))
    return "tiny"


class EventTable:
    """The latest event per (device, modality), rendered as a fixed-width text table."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.count = 0
        self.lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        """Record one event from ``streambind.events``."""
        with self.lock:
            self.latest[(event["device_id"], event["modality"])] = event
            self.count += 1

    def render(self, header: str) -> str:
        """The table as text, newest windows of each stream."""
        with self.lock:
            rows = sorted(self.latest.items())
            count = self.count
        lines = [header, f"{count} events", "",
                 f"{'device':<12} {'modality':<8} {'window end (UTC)':<19} labels"]
        for (device, modality), event in rows:
            end_s = event["window_end_ns"] / 1e9
            stamp = time.strftime("%H:%M:%S", time.gmtime(end_s)) + f".{int(end_s % 1 * 10)}"
            labels = ", ".join(f"{x['label']} {x['score']:.2f}" for x in event["labels"])
            lines.append(f"{device:<12} {modality:<8} {stamp:<19} {labels}")
        return "\n".join(lines) + "\n"


def _follow_events(bootstrap: str, topic: str, table: EventTable, stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                             enable_auto_commit=False)
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    table.add(json.loads(record.value))
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or ``--duration``."""
    import ray
    from ray import serve

    from streambind.broker import EmbeddedBroker
    from streambind.config import AppConfig
    from streambind.serve.app import INGEST_APP, INGEST_DEPLOYMENT, deploy

    out = sys.stdout
    model = choose_model(args.model, out)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        labels_file = workdir / "labels.json"
        labels_file.write_text(json.dumps(DEMO_LABELS))
        config = AppConfig.from_dict({
            "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": "streambind-demo"},
            "model": {"source": model},
            "labels": {"file": str(labels_file)},
            "embedder": {"num_cpus": 0.5},
            "ingest": {"num_cpus": 0.5},
        })
        out.write(f"broker ready at {broker.bootstrap}; starting Ray Serve (model {model})...\n")
        out.flush()
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        stack.callback(serve.shutdown)
        deploy(config)
        status = serve.get_deployment_handle(INGEST_DEPLOYMENT, INGEST_APP).status
        metrics_port = status.remote().result(timeout_s=120)["metrics_port"]

        simulator_log = stack.enter_context(open(workdir / "simulator.log", "w"))
        simulator = subprocess.Popen(
            [sys.executable, "-m", "streambind", "simulate", "--bootstrap", broker.bootstrap,
             "--devices", str(args.devices), "--duration", str(args.duration or 24 * 3600),
             "--realtime", "--malformed-share", "0.01"],
            stdout=subprocess.DEVNULL,
            stderr=simulator_log,
        )
        stack.callback(simulator.wait, 10)
        stack.callback(simulator.terminate)

        table = EventTable()
        events_thread = threading.Thread(
            target=_follow_events, args=(broker.bootstrap, "streambind.events", table, stop),
            daemon=True)
        events_thread.start()
        stack.callback(events_thread.join, 5)
        stack.callback(stop.set)

        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        interactive = out.isatty()
        while not stop.wait(1.0) and time.monotonic() < deadline:
            stats = status.remote().result(timeout_s=30)["stats"]
            header = (
                f"streambind demo  model={model}  metrics=http://127.0.0.1:{metrics_port}/metrics"
                f"  records={stats['records_accepted']} dlq={stats['records_dlq']}"
                f" late={stats['records_late']}  (Ctrl-C stops)"
            )
            if simulator.poll() is not None and simulator.returncode != 0:
                simulator_log.flush()
                tail = (workdir / "simulator.log").read_text()[-2000:]
                out.write(f"simulator exited with {simulator.returncode}:\n{tail}\n")
                return 1
            text = table.render(header)
            out.write("\x1b[H\x1b[2J" + text if interactive else text + "\n")
            out.flush()
    return 0
