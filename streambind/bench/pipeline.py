"""End-to-end windows/s against the embedder's own throughput, and window-end latency.

Three measurements in one run, on the same model, batch size and device:

1. embedder alone: the model's forward on batches of featurized windows, in process;
2. pipeline throughput: a backlog of clean sensor streams on the broker, consumed by the
   Ray Serve ingest + embedder applications until every window's event is published;
3. latency: a stream paced in real time (each chunk sent when its last sample would have
   been recorded), from window end (event time) to the event's publish time. The floor is
   the allowed lateness: a window closes only once the watermark passes its end.

The ratio pipeline/embedder is the pipeline's efficiency (1.0: no overhead at all).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack

import numpy as np
import torch

from streambind.units import NS_PER_S

logger = logging.getLogger(__name__)

S = NS_PER_S  # short name for event-time arithmetic
WINDOW_S = {"audio": 2, "vision": 2, "depth": 2, "thermal": 2, "imu": 5}
INPUT_SHAPES = {
    "audio": (1, 128, 204),
    "vision": (3, 2, 224, 224),
    "depth": (1, 224, 224),
    "thermal": (1, 224, 224),
    "imu": (6, 2000),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bench pipeline``."""
    parser.add_argument("--bootstrap", help="use this broker instead of an embedded one")
    parser.add_argument(
        "--model", default="tiny", help="huge, tiny, huge-untrained or a checkpoint path"
    )
    parser.add_argument("--modality", default="audio", choices=sorted(WINDOW_S))
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20, help="backlog per device")
    parser.add_argument("--latency-seconds", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="fp32, bf16, fp16 or auto")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray")


def embedder_throughput(runner, modality: str, batch_size: int, seconds: float = 5.0) -> float:
    """Windows/s of the model's forward alone on random featurized batches."""
    batch = torch.randn(batch_size, *INPUT_SHAPES[modality])
    runner.forward(modality, batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runner.forward(modality, batch)
        done += batch_size
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def expected_windows(modality: str, devices: int, seconds: int) -> int:
    """Fully covered windows of a clean stream of ``seconds`` per device (hop = size/2)."""
    size_s = WINDOW_S[modality]
    return devices * int((seconds - size_s) / (size_s / 2) + 1)


def _config(args, bootstrap: str, topics: dict[str, str], group: str):
    from streambind.config import AppConfig

    batching = {args.modality: {"max_batch_size": args.batch_size, "batch_wait_timeout_s": 0.01}}
    return AppConfig.from_dict(
        {
            "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
            "stream": {
                "modalities": [args.modality],
                "topics": {args.modality: topics["input"]},
                "events_topic": topics["events"],
                "dlq_topic": topics["dlq"],
                "publish_embeddings": False,
                "idle_timeout_s": 1.0,
                "max_batch_windows": args.batch_size,
                "max_buffered_windows": 4 * args.batch_size,
            },
            # The window's tower and the text tower (labels): no memory for the others.
            "model": {"source": args.model, "device": args.device, "dtype": args.dtype,
                      "modalities": [args.modality, "text"]},
            "embedder": {"num_cpus": 0.5, "num_gpus": 1 if args.device == "cuda" else 0,
                         "batching": batching},
            "ingest": {"num_cpus": 0.5},
            "labels": {"topic": topics["labels"]},
            "fusion": False,
        }
    )


def _label_file(path: str) -> None:
    labels = {"name": "bench", "version": 1, "labels": [
        {"name": "speech"}, {"name": "music"}, {"name": "silence"}, {"name": "walking"}]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(labels, fh)


def _wait_for_events(
    consumer, count: int, timeout_s: float, idle_s: float = 60
) -> tuple[list[dict], list[float]]:
    """Events read until ``count`` arrived, ``idle_s`` passed without one, or the timeout."""
    events: list[dict] = []
    arrivals_s: list[float] = []
    deadline = time.monotonic() + timeout_s
    last_s = time.monotonic()
    while len(events) < count and time.monotonic() < min(deadline, last_s + idle_s):
        for records in consumer.poll(timeout_ms=100).values():
            events += [json.loads(r.value) for r in records]
            arrivals_s += [time.perf_counter()] * len(records)
            last_s = time.monotonic()
    return events, arrivals_s


def _paced_send(producer, topic: str, items, chunk_ns: int) -> None:
    # Send each chunk when its last sample would have been recorded, as a device would.
    for ts_ns, _modality, record in items:
        wait_s = (ts_ns + chunk_ns - time.time_ns()) / S
        if wait_s > 0:
            time.sleep(wait_s)
        producer.send(topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()


def _chunk_ns(modality: str) -> int:
    # The clean streams' record spans: 100 ms audio chunks, 0.5 s IMU batches, 4 fps frames.
    return {"audio": 100_000_000, "imu": 500_000_000}.get(modality, 250_000_000)


def run(args: argparse.Namespace) -> int:
    """Run the three measurements and print them with the ratio."""
    import ray
    from kafka import KafkaConsumer, KafkaProducer
    from ray import serve

    from streambind.broker import EmbeddedBroker
    from streambind.serve.app import (
        EMBEDDER_APP,
        INGEST_APP,
        build_embedder_app,
        build_ingest_app,
    )
    from streambind.serve.embedder import ModelRunner
    from streambind.sim.kafka_io import send_records
    from streambind.sim.streams import aligned_origin_ns, timed_stream

    logging.getLogger("kafka").setLevel(logging.WARNING)
    with ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(EmbeddedBroker()).bootstrap
        tag = uuid.uuid4().hex[:8]
        topics = {k: f"bench.{k}.{tag}" for k in ("input", "events", "dlq", "labels")}
        config = _config(args, bootstrap, topics, group=f"bench-{tag}")

        runner = ModelRunner(config.model)
        embedder_wps = embedder_throughput(runner, args.modality, args.batch_size)
        device, dtype, model_name = runner.device, runner.dtype, runner.model_name
        del runner

        t0 = aligned_origin_ns()
        # A fleet's records interleave in event time on the partition, as devices record
        # concurrently; one device after another would be late against the watermark.
        backlog = sorted(
            (x for d in range(args.devices)
             for x in timed_stream(f"dev-{d}", t0, {args.modality: args.seconds})),
            key=lambda x: x[0],
        )
        send_records(bootstrap, [(topics["input"], record) for _, _, record in backlog])
        want = expected_windows(args.modality, args.devices, args.seconds)

        label_path = stack.enter_context(tempfile.TemporaryDirectory()) + "/labels.json"
        _label_file(label_path)
        doc = config.to_dict()
        doc["labels"]["file"] = label_path
        consumer = KafkaConsumer(topics["events"], bootstrap_servers=bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        serve.start(proxy_location="Disabled")
        stack.callback(serve.shutdown)
        serve.run(build_embedder_app({"config_dict": doc}), name=EMBEDDER_APP, route_prefix=None)
        serve.run(build_ingest_app({"config_dict": doc}), name=INGEST_APP, route_prefix=None)
        events, arrivals_s = _wait_for_events(consumer, want, timeout_s=300, idle_s=30)
        # Steady state: from the first published batch to the last, start-up excluded.
        first_batch = arrivals_s.count(arrivals_s[0]) if arrivals_s else 0
        elapsed_s = (arrivals_s[-1] - arrivals_s[0]) if arrivals_s else float("inf")
        pipeline_wps = (len(events) - first_batch) / elapsed_s if elapsed_s > 0 else 0.0

        # Latency: a live stream for two devices, paced in real time.
        live_t0 = (time.time_ns() // S + 1) * S
        live = sorted(
            (x for d in range(2) for x in timed_stream(
                f"live-{d}", live_t0, {args.modality: args.latency_seconds})),
            key=lambda x: x[0],
        )
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        _paced_send(producer, topics["input"], live, chunk_ns=_chunk_ns(args.modality))
        producer.close()
        live_want = expected_windows(args.modality, 2, args.latency_seconds)
        live_events = [
            e for e in _wait_for_events(consumer, live_want, timeout_s=60)[0]
            if e["device_id"].startswith("live-")
        ]
        latencies_s = np.array(
            [(e["emitted_at_ns"] - e["window_end_ns"]) / S for e in live_events]
        )
        consumer.close()

    sys.stdout.write(
        f"streambind bench pipeline: model={model_name} modality={args.modality} "
        f"device={device} dtype={str(dtype).removeprefix('torch.')} batch={args.batch_size} "
        f"devices={args.devices} backlog={args.seconds}s torch={torch.__version__}\n"
        f"embedder alone     {embedder_wps:10.1f} windows/s\n"
        f"pipeline           {pipeline_wps:10.1f} windows/s  ({len(events)}/{want} windows, "
        f"steady state over {elapsed_s:.1f} s)\n"
        f"pipeline/embedder  {pipeline_wps / embedder_wps:10.2f}x\n"
    )
    if len(latencies_s):
        p50, p99 = np.percentile(latencies_s, [50, 99])
        sys.stdout.write(
            f"latency window end -> publish: p50 {p50:.3f} s  p99 {p99:.3f} s  "
            f"({len(latencies_s)}/{live_want} live windows; floor = allowed lateness 1.0 s)\n"
        )
    return 0 if len(events) == want else 1
