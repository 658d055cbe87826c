"""GPU figures in one run: each tower's forward at two batch sizes, then the streaming core
feeding the model from the embedded broker, against the model alone.

Made for a machine lent for minutes, without network or Ray (``scripts/gpu-check.sh``
installs the other dependencies from carried wheels and runs this). Two parts:

1. towers: ``bench model`` per tower and batch size (``--preset huge-untrained --dtype
   bf16`` by default): items/s with fused SDPA and with reference attention, their ratio,
   the largest relative difference of their embeddings, and peak accelerator memory;
2. stream: per modality, a clean backlog of ``--stream-devices`` devices on the embedded
   broker, consumed by the streaming core (decode, window, featurize on the CPU) with the
   model in this process as its embedder; windows/s from the first acknowledged batch to
   the last, against the model alone on batches of the same size (H2D copy and
   normalisation included). The ratio core/model is the share of the accelerator's
   throughput the CPU side delivers (1.0: the GPU is the bottleneck).

Writes ``gpu-figures.json`` and ``gpu-figures.md`` under ``--out``. ``--dry-run`` runs the
same code on the CPU with the tiny preset and tiny sizes (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from streambind.bench import model as model_bench
from streambind.model.config import MODEL_MODALITIES
from streambind.model.dtypes import DTYPES

logger = logging.getLogger(__name__)

STREAM_MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
DRY_RUN = {"preset": "tiny", "device": "cpu", "dtype": "fp32", "batch_sizes": [1, 2],
           "iters": 1, "warmup": 0, "stream_devices": 2, "stream_seconds": 6,
           "stream_modalities": ["audio", "imu"], "stream_batch": 4, "model_seconds": 0.3}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bench gpu``."""
    parser.add_argument("--out", required=True, help="directory for gpu-figures.json/.md")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny preset on the CPU, tiny sizes (overrides the sizes below)")
    parser.add_argument("--preset", default="huge-untrained",
                        choices=("tiny", "huge-untrained"))
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--dtype", default="bf16", choices=tuple(DTYPES))
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[8, 32])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modalities", nargs="+", choices=MODEL_MODALITIES,
                        default=list(MODEL_MODALITIES))
    parser.add_argument("--stream-modalities", nargs="*", choices=STREAM_MODALITIES,
                        default=["vision", "audio", "imu"])
    parser.add_argument("--stream-devices", type=int, default=64)
    parser.add_argument("--stream-seconds", type=int, default=40, help="backlog per device")
    parser.add_argument("--stream-batch", type=int, default=32, help="max_batch_windows")
    parser.add_argument("--model-seconds", type=float, default=3.0,
                        help="duration of each model-alone measurement")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip the remaining stream passes past this many seconds")


class ModelEmbedder:
    """The streaming core's ``Embedder``: the model in this process, on its device."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    def embed(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, D), float32 on the CPU."""
        x = batch.to(self.device, non_blocking=True)
        if x.is_floating_point():
            x = x.to(self.dtype)
        with torch.inference_mode():
            out = self.model({modality: x})[modality]  # (B, D)
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu()


class TimedAckSink:
    """Publishes nothing; acknowledges every window at once and records when."""

    def __init__(self) -> None:
        self.windows = 0
        self.acks: list[tuple[float, int]] = []  # (perf_counter, windows in the batch)
        self.lock = threading.Lock()

    def publish(self, producer: Any, items: Sequence[Any]) -> list[Any]:
        """Count the windows and return completed futures."""
        from kafka.future import Future

        with self.lock:
            self.windows += len(items)
            self.acks.append((time.perf_counter(), len(items)))
        return [Future().success(None) for _ in items]

    def steady_rate(self, first_poll_s: float | None) -> tuple[float, float]:
        """Windows/s from the first acknowledged batch to the last (start-up excluded), and
        that span in seconds; with a single batch (tiny runs), from the first poll."""
        with self.lock:
            acks = list(self.acks)
        if not acks:
            return 0.0, 0.0
        if len(acks) == 1:
            span_s = acks[0][0] - (first_poll_s or acks[0][0])
            return (acks[0][1] / span_s if span_s > 0 else 0.0), span_s
        span_s = acks[-1][0] - acks[0][0]
        done = sum(n for _, n in acks[1:])
        return (done / span_s if span_s > 0 else 0.0), span_s


def model_alone(embedder: ModelEmbedder, modality: str, batch_size: int,
                seconds: float) -> float:
    """Windows/s of the embedder alone on random featurized batches of ``batch_size``."""
    from streambind.bench.pipeline import INPUT_SHAPES

    batch = torch.randn(batch_size, *INPUT_SHAPES[modality])
    embedder.embed(modality, batch)  # warm-up (kernels, allocator)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        embedder.embed(modality, batch)  # .cpu() at the end synchronizes
        done += batch_size
    return done / (time.perf_counter() - started)


def stream_pass(bootstrap: str, embedder: ModelEmbedder, modality: str, devices: int,
                seconds: int, batch: int, timeout_s: float = 240.0) -> dict[str, Any]:
    """A clean backlog of one modality through the streaming core into the model."""
    from streambind.bench.pipeline import expected_windows
    from streambind.sim.kafka_io import send_records
    from streambind.sim.streams import aligned_origin_ns, timed_stream
    from streambind.stream.config import StreamConfig
    from streambind.stream.runner import StreamRunner

    tag = uuid.uuid4().hex[:8]
    topic = f"gpu.sensors.{modality}.{tag}"
    t0 = aligned_origin_ns()
    # A fleet's records interleave in event time on the partition, as devices record.
    backlog = sorted((x for d in range(devices)
                      for x in timed_stream(f"dev-{d}", t0, {modality: seconds})),
                     key=lambda x: x[0])
    records = send_records(bootstrap, [(topic, r) for _, _, r in backlog])
    want = expected_windows(modality, devices, seconds)
    cfg = StreamConfig(bootstrap=bootstrap, group_id=f"gpu-{tag}", modalities=(modality,),
                       topics={modality: topic}, state_topic=f"gpu.state.{tag}",
                       idle_timeout_s=0.5, session_timeout_ms=6000, max_poll_records=500,
                       max_batch_windows=batch, max_buffered_windows=8 * batch,
                       publish_embeddings=False, model="gpu-bench")
    sink = TimedAckSink()
    runner = StreamRunner(cfg, embedder, sink).start()
    deadline = time.perf_counter() + timeout_s
    try:
        while sink.windows < want and time.perf_counter() < deadline and runner.error is None:
            time.sleep(0.05)
    finally:
        runner.stop()
    rate, span_s = sink.steady_rate(runner.stats.first_poll_s)
    return {"modality": modality, "devices": devices, "backlog_s": seconds,
            "records": records, "windows": sink.windows, "expected_windows": want,
            "core_windows_per_s": rate, "steady_span_s": span_s}


def _environment(device: torch.device) -> dict[str, Any]:
    env = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "torch": torch.__version__, "python": platform.python_version(),
           "cpus": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda}
    return env


def markdown(doc: dict[str, Any]) -> str:
    """The figures as markdown tables (for the README)."""
    env, opts = doc["environment"], doc["options"]
    lines = [f"GPU figures: {env.get('gpu', env['device'])}, {env['date_utc']}, torch "
             f"{env['torch']}, preset {opts['preset']}, {opts['dtype']}"
             f"{' (DRY RUN: CPU, tiny sizes; not a GPU figure)' if opts['dry_run'] else ''}",
             "", "| tower | batch | tokens | SDPA items/s | reference items/s | SDPA/ref "
             "| max rel diff | peak GiB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in doc["towers"]:
        lines.append(f"| {r['tower']} | {r['batch']} | {r['tokens']} | "
                     f"{r['sdpa_items_per_s']:.1f} | {r['reference_items_per_s']:.1f} | "
                     f"{r['sdpa_over_reference']:.2f}x | {r['max_rel_diff']:.1e} | "
                     f"{r['peak_memory_gib']:.2f} |")
    lines += ["", "| modality | devices x backlog | windows | core windows/s | model alone "
              "windows/s | core/model |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in doc["stream"]:
        lines.append(f"| {r['modality']} | {r['devices']} x {r['backlog_s']} s | "
                     f"{r['windows']}/{r['expected_windows']} | {r['core_windows_per_s']:.1f} "
                     f"| {r['model_windows_per_s']:.1f} | {r['core_over_model']:.2f} |")
    lines += [f"- skipped: {s}" for s in doc["skipped"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run both parts, print the tables and write them under ``--out``."""
    started = time.perf_counter()
    opts = vars(args) | (DRY_RUN if args.dry_run else {})
    opts.pop("func", None)
    if opts["device"] == "cuda" and not torch.cuda.is_available():
        sys.stderr.write("bench gpu: no CUDA device is visible (use --dry-run on a CPU)\n")
        return 2
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("streambind.stream").setLevel(logging.WARNING)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(opts["device"])
    w = sys.stdout.write
    w(f"bench gpu: preset={opts['preset']} device={device} dtype={opts['dtype']} "
      f"batches={opts['batch_sizes']} dry_run={opts['dry_run']}\n")
    model = model_bench.build_model(opts["preset"], opts["modalities"], device, opts["dtype"])
    w(f"model built in {time.perf_counter() - started:.1f} s\n")
    generator = torch.Generator().manual_seed(0)
    towers = []
    for modality in model.towers:
        for batch in opts["batch_sizes"]:
            row = model_bench.measure_tower(model, modality, batch, opts["iters"],
                                            opts["warmup"], generator)
            towers.append(row)
            w(f"tower {modality:<8} batch {batch:>3}: {row['sdpa_items_per_s']:9.1f} items/s "
              f"SDPA, {row['reference_items_per_s']:9.1f} reference, "
              f"peak {row['peak_memory_gib']:.2f} GiB\n")
    stream, skipped = [], []
    if opts["stream_modalities"]:
        from streambind.broker import EmbeddedBroker

        embedder = ModelEmbedder(model)
        with EmbeddedBroker() as broker:
            for modality in opts["stream_modalities"]:
                if modality not in model.towers:
                    skipped.append(f"stream {modality}: the model has no such tower")
                    continue
                if time.perf_counter() - started > opts["budget_s"]:
                    skipped.append(f"stream {modality}: past the {opts['budget_s']} s budget")
                    continue
                row = stream_pass(broker.bootstrap, embedder, modality,
                                  opts["stream_devices"], opts["stream_seconds"],
                                  opts["stream_batch"])
                row["model_windows_per_s"] = model_alone(embedder, modality,
                                                         opts["stream_batch"],
                                                         opts["model_seconds"])
                row["core_over_model"] = (row["core_windows_per_s"]
                                          / row["model_windows_per_s"])
                stream.append(row)
                w(f"stream {modality:<8}: {row['core_windows_per_s']:8.1f} windows/s core+model"
                  f" ({row['windows']}/{row['expected_windows']} windows), model alone "
                  f"{row['model_windows_per_s']:8.1f}, ratio {row['core_over_model']:.2f}\n")
    doc = {"environment": _environment(device), "options": opts, "towers": towers,
           "stream": stream, "skipped": skipped,
           "elapsed_s": round(time.perf_counter() - started, 1)}
    (out / "gpu-figures.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    table = markdown(doc)
    (out / "gpu-figures.md").write_text(table, encoding="utf-8")
    w(table)
    complete = all(r["windows"] == r["expected_windows"] for r in stream)
    return 0 if complete else 1
