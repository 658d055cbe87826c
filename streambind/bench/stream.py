"""Throughput of the streaming core alone vs raw kafka-python consumption of the same topics.

Publishes a fleet's records once, then reads them from the same broker, side by side in one
run (``--repeat`` times, alternating): (1) a bare ``KafkaConsumer`` that only polls (the
ceiling), and (2) the streaming core (decode + validate + window + assemble + featurize)
with a no-op embedder and a sink that acknowledges at once (no output records), in a
consumer group with commits. Both consumers use the same settings (``max_poll_records``,
fetch sizes: kafka-python's defaults). Prints records/s and windows/s of each, their ratio,
and the peak resident memory of each pass. Starts an embedded broker unless
``--bootstrap`` is given.

Fairness: the core pass is timed from the poll that returned its first records to the
acknowledgement of its last window (the last windows of each device close by the idle
timeout, so the pass waits for them), less the time it had nothing to do but wait for that
timeout; the group join is not counted, nor is the featurizers' one-time
warm-up (numba's compiled kernels, filter banks), done before the pass. torch runs
``--torch-threads`` intra-op threads in the core pass (default 1, what a Ray actor with
``num_cpus`` <= 1, such as the ingest replica, gets: ``OMP_NUM_THREADS=1``).

CPU: the seconds of CPU (user + system, every thread) the benchmark's process used during
each timed span, and the embedded broker's in the same span (not measured with
``--bootstrap``), with how many cores the core would need busy throughout to finish in
twice the raw time at that CPU (what 0.5x asks of the machine).

Peak memory: the process's peak resident set (``VmHWM``), reset before each pass
(``/proc/self/clear_refs``), so each figure is that pass's own peak, over the resident
baseline printed with it (interpreter, libraries, broker client). Without the reset
(not Linux) the figure is the process's peak so far (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from streambind.bench.costs import CpuSpan, Peak, cpu_summary, cpu_text
from streambind.bench.stream_workload import Workload, records

logger = logging.getLogger(__name__)


class _AckSink:
    """Publishes nothing; every window is acknowledged at once."""

    def __init__(self) -> None:
        self.windows = 0

    def publish(self, producer: Any, items: Sequence[Any]) -> list[Any]:
        """Count the windows and return completed futures."""
        from kafka.future import Future

        self.windows += len(items)
        return [Future().success(None) for _ in items]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind bench stream`` options."""
    from streambind.stream.chunks import MODALITIES

    parser.add_argument("--bootstrap", default=None, help="Kafka HOST:PORT (default: embedded)")
    parser.add_argument("--devices", type=int, default=8, help="fleet size (e.g. 10, 100, 1000)")
    parser.add_argument("--duration", type=float, default=30.0, help="event-time seconds")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pass")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames/s of vision, depth and thermal (default: 2, 4 or 5 per "
                             "device, as simulated)")
    parser.add_argument("--width", type=int, default=None, help="camera frame width (160)")
    parser.add_argument("--height", type=int, default=None, help="camera frame height (120)")
    parser.add_argument("--generator", choices=("auto", "world", "templates"), default="auto",
                        help="world: the simulator; templates: a few simulated payloads "
                             "reused (fast for big fleets); auto: world unless --fps is given "
                             "or --devices > 32")
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate raw and core passes this many times; medians shown")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads during the core pass")
    parser.add_argument("--decode-threads", type=int, default=1,
                        help="threads decoding records off the consumer thread (0: inline)")
    parser.add_argument("--max-buffered-mb", type=float, default=None,
                        help="the core's byte bound on open and queued windows (default: "
                             "the StreamConfig default)")


def _raw_pass(bootstrap: str, topics: list[str], total: int, timeout_s: float,
              cpu: CpuSpan | None = None) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=500)
    tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = 0
    start = None
    deadline = time.perf_counter() + timeout_s
    while seen < total and time.perf_counter() < deadline:
        polled = time.perf_counter()
        before = cpu.read() if cpu is not None and start is None else None
        batches = consumer.poll(timeout_ms=200)
        if batches and start is None:
            start = polled  # from the poll that returned the first records
            if cpu is not None:
                cpu.mark(before)
        for msgs in batches.values():
            seen += len(msgs)
    elapsed = time.perf_counter() - (start or deadline)
    if cpu is not None:
        cpu.stop()
    consumer.close()
    if seen < total:
        logger.warning("raw pass read %d of %d records", seen, total)
    return elapsed


def _core_pass(
    bootstrap: str, topics: dict[str, str], total: int, timeout_s: float,
    decode_threads: int = 1, max_buffered_mb: float | None = None, cpu: CpuSpan | None = None,
) -> tuple[float, int, Any]:
    from streambind.stream.config import StreamConfig
    from streambind.stream.embed import NoopEmbedder
    from streambind.stream.runner import StreamRunner

    cfg = StreamConfig(bootstrap=bootstrap, group_id=f"bench-{time.time_ns()}",
                       modalities=tuple(topics), topics=topics, idle_timeout_s=0.5,
                       session_timeout_ms=2000, max_poll_records=500,
                       max_buffered_windows=256, max_batch_windows=32, model="noop",
                       **({} if max_buffered_mb is None else
                          {"max_buffered_bytes": round(max_buffered_mb * 2**20)}))
    sink = _AckSink()
    runner = StreamRunner(cfg, NoopEmbedder(), sink, decode_threads=decode_threads)
    runner.start()
    deadline = time.perf_counter() + timeout_s
    stats = runner.stats
    drained_s = closed_s = None  # idle from drained_s until closed_s (last windows closed)
    while time.perf_counter() < deadline and runner.error is None:
        now_s = time.perf_counter()
        if cpu is not None and not cpu.marked and stats.first_poll_s is not None:
            cpu.mark()  # within one sleep of the first records
        done = stats.records_accepted + stats.records_dlq + stats.records_late >= total
        idle = done and runner._buffered == 0 and sink.windows >= stats.windows_queued
        still_open = runner.open_bytes() > 0
        if idle and still_open and drained_s is None:
            drained_s = now_s  # nothing left to do but wait for the idle timeout
        if done and not still_open and closed_s is None:
            closed_s = now_s
        if idle and not still_open:
            break
        time.sleep(0.002)
    end_s = time.perf_counter()
    if cpu is not None:
        cpu.stop()
    # From the poll that returned the first records to the acknowledgement of the last
    # window (the last ones close by the idle timeout, after their device's last record:
    # they are part of the work), less the time the core only waited for that timeout.
    waited_s = max(0.0, closed_s - drained_s) if drained_s and closed_s else 0.0
    elapsed = end_s - (stats.first_poll_s or deadline) - waited_s
    runner.stop()
    return max(elapsed, 1e-9), sink.windows, stats


def _warm_up(samples: dict[str, list[Any]]) -> None:
    """Featurize a few windows of each modality once (numba kernels, filter banks, mel
    banks), so the timed pass measures steady state."""
    from streambind.stream.embed import featurize
    from streambind.stream.prepare import assemble_window
    from streambind.stream.records import DecodeOptions, decode_record
    from streambind.stream.windows import Windower, WindowSpec

    options = DecodeOptions(max_future_ns=10**18)
    for modality, recs in samples.items():
        windower = Windower(WindowSpec.default(modality))
        for i, rec in enumerate(recs):
            for chunk in decode_record(modality, rec.key, rec.value, rec.headers, partition=0,
                                       offset=i, now_ns=time.time_ns(), options=options):
                windower.add(chunk)
        ok = [w for w in windower.flush() if w.outcome == "ok"][:2]
        if ok:
            featurize(modality, [assemble_window(w) for w in ok])


def _publish(bootstrap: str, work: Workload, topics: dict[str, str]) -> tuple[int, float,
                                                                             dict, dict]:
    """Send the workload; returns (records, MB, records per modality, warm-up samples)."""
    from streambind.sim.kafka_io import send_records
    from streambind.sim.streams import aligned_origin_ns

    modality_of = {t: m for m, t in topics.items()}
    counts: dict[str, int] = {m: 0 for m in topics}
    samples: dict[str, list[Any]] = {m: [] for m in topics}
    first_key: dict[str, bytes] = {}
    size = 0

    def counted():
        nonlocal size
        start_ns = aligned_origin_ns(ago_s=600 + int(work.duration_s))
        for topic, rec in records(work, start_ns, topics):
            m = modality_of[topic]
            counts[m] += 1
            size += len(rec.value)
            if first_key.setdefault(m, rec.key) == rec.key and len(samples[m]) < 200:
                samples[m].append(rec)  # one device's first records: the warm-up
            yield topic, rec

    total = send_records(bootstrap, counted())
    return total, size / 1e6, counts, samples


def run(args: argparse.Namespace) -> int:
    """Run the passes and print the comparison."""
    # kafka-python logs a cancelled metadata refresh as an error when a consumer closes
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("streambind.stream").setLevel(logging.WARNING)
    import torch

    from streambind.broker import EmbeddedBroker

    generator = args.generator
    if generator == "auto":
        generator = "templates" if args.fps is not None or args.devices > 32 else "world"
    if generator == "world" and args.fps is not None:
        raise SystemExit("--fps needs --generator templates (simulated devices pick 2-5 fps)")
    size = None
    if args.width or args.height:
        size = (args.width or 160, args.height or 120)
    work = Workload(args.devices, args.duration, tuple(args.modalities), args.seed, args.fps,
                    size, generator)
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    out = sys.stdout.write
    try:
        suffix = str(time.time_ns())
        topics = {m: f"bench.sensors.{m}.{suffix}" for m in args.modalities}
        started = time.perf_counter()
        total, payload_mb, counts, samples = _publish(bootstrap, work, topics)
        camera = f"{size[0]}x{size[1]}" if size else "160x120"
        fps = f"{args.fps:g} fps" if args.fps else "2-5 fps"
        out(f"workload ({generator}): {args.devices} devices x {args.duration:g} s event time, "
            f"cameras {camera} at {fps}, {total} records ({payload_mb:.1f} MB), per modality "
            f"{counts}; published in {time.perf_counter() - started:.1f} s\n")
        _warm_up(samples)
        del samples
        threads = torch.get_num_threads()
        raws, cores = [], []
        broker_pid = broker.pid if broker is not None else None
        cpus: list[tuple[float, CpuSpan, CpuSpan]] = []  # (raw seconds, raw CPU, core CPU)
        for _ in range(max(1, args.repeat)):
            raw_cpu, core_cpu = CpuSpan(broker_pid), CpuSpan(broker_pid)
            with Peak() as raw_mem:
                raw_s = _raw_pass(bootstrap, list(topics.values()), total, args.timeout,
                                  raw_cpu)
            raws.append((total / raw_s, raw_s, raw_mem))
            torch.set_num_threads(max(1, args.torch_threads))
            try:
                with Peak() as core_mem:
                    core_s, windows, core = _core_pass(bootstrap, topics, total, args.timeout,
                                                       args.decode_threads, args.max_buffered_mb,
                                                       core_cpu)
            finally:
                torch.set_num_threads(threads)
            cores.append((total / core_s, windows / core_s, core_s, windows, core, core_mem))
            cpus.append((raw_s, raw_cpu, core_cpu))
            out(f"  pass: raw {total / raw_s:9.0f} records/s ({raw_s:.2f} s) | core "
                f"{total / core_s:9.0f} records/s, {windows / core_s:8.1f} windows/s "
                f"({core_s:.2f} s) | ratio {raw_s / core_s:.3f} | CPU s raw "
                f"{cpu_text(raw_cpu)}, core {cpu_text(core_cpu)}\n")
        raw_rps = statistics.median(r[0] for r in raws)
        core_rps = statistics.median(c[0] for c in cores)
        wps = statistics.median(c[1] for c in cores)
        last = cores[-1]
        raw_peak = max(r[2].peak_mb for r in raws)
        core_peak = max(c[5].peak_mb for c in cores)
        base = min(c[5].base_mb for c in cores)
        out(f"raw kafka-python consume: {raw_rps:10.0f} records/s, peak RSS {raw_peak:.0f} MB\n")
        out(f"streaming core (no-op embedder): {core_rps:10.0f} records/s, {wps:8.1f} windows/s "
            f"({last[3]} windows, {last[4].windows_dropped} dropped, "
            f"{last[4].windows_closed_at_bound} closed at the byte bound, {last[4].records_late} "
            f"late records), peak RSS {core_peak:.0f} MB (baseline {base:.0f} MB)\n")
        medians = f" (medians of {len(raws)} passes each)" if len(raws) > 1 else ""
        out(f"core / raw records/s ratio: {core_rps / raw_rps:.3f}{medians}; torch threads "
            f"{max(1, args.torch_threads)}, decode threads {args.decode_threads}\n")
        out(cpu_summary(cpus))
    finally:
        if broker is not None:
            broker.stop()
    return 0
