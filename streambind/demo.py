"""The whole pipeline on one machine, with a live table of events and their accuracy.

Starts the embedded broker, the world simulator (``streambind simulate --truth`` in a
subprocess, paced to the wall clock, unbounded unless ``--duration``) and the pipeline on
a local Ray with the world model and the world's label set, then shows, refreshed every
second, the latest labels per device and modality beside what the simulator is really
doing there, and the running top-1 accuracy per modality (and fused) against the
simulator's ground truth. Ctrl-C (or ``--duration``) stops it all.

The world model is trained on first use (2-4 minutes on 2 CPU cores, cached in
``$STREAMBIND_CACHE/world`` and reused); ``--model tiny`` skips that and runs the untrained
tiny model, whose labels mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from streambind.cli import LOG_LEVEL_ENV
from streambind.world.truth import Accuracy, TruthFollower, TruthIndex, top_label

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "world"
TOP_K = 3  # labels shown per event
SENSOR_MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
TINY_BANNER = (
    "NOTE: --model tiny is the UNTRAINED tiny model: the pipeline is real, its labels are\n"
    "not meaningful (expect accuracy near chance). Run `streambind demo` without --model\n"
    "for the world model, whose labels match what the simulator does.\n"
)
TRAIN_NOTICE = (
    "{why} ({path}).\n"
    "Training it once now (the same as `streambind world --train`): 2-4 minutes and 3 GB\n"
    "of memory on 2 CPU cores, longer on a busy machine; later runs reuse it. Ctrl-C\n"
    "cancels; `--model tiny` skips it (untrained: labels not meaningful).\n"
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind demo``."""
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    parser.add_argument("--model", default=None,
                        help="world (default: trained on first use), tiny (untrained), huge, "
                             "or a bound-model directory")
    parser.add_argument("--cache-dir", help="model cache directory (default $STREAMBIND_CACHE)")
    parser.add_argument("--seed", type=int, default=0, help="the simulated world's seed")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")


def choose_model(requested: str | None) -> str:
    """The model to run: as requested, else the world model."""
    return requested or DEFAULT_MODEL


def prepare_model(model: str, cache_dir: str | None, out: TextIO,
                  stop: threading.Event) -> bool:
    """Make ``model`` loadable: train the world model when it is missing (a subprocess that
    shows its progress; Ctrl-C cancels it). False when cancelled or training failed."""
    from streambind.model.cache import (
        checkpoint_cache_path,
        huge_checkpoint_available,
        world_model_available,
        world_model_current,
        world_model_dir,
    )

    if model == "tiny":
        out.write(TINY_BANNER)
    if model == "huge" and not huge_checkpoint_available(cache_dir):
        out.write(f"the official ImageBind weights are not in the cache "
                  f"({checkpoint_cache_path(cache_dir)}): fetch them (CC BY-NC-SA 4.0) with "
                  "`python -m streambind.model.download`, or run the demo without --model\n")
        return False
    if model != DEFAULT_MODEL or world_model_current(cache_dir):
        return True
    why = ("The cached world model was trained by another version of streambind"
           if world_model_available(cache_dir) else "The world model is not in the cache yet")
    out.write(TRAIN_NOTICE.format(why=why, path=world_model_dir(cache_dir)))
    out.flush()
    cmd = [sys.executable, "-m", "streambind", "world", "--train"]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    # Its own session: a Ctrl-C reaches only the demo, which stops it without a traceback.
    # Only its progress bars and errors reach the terminal: the notice above says the rest.
    env = {**os.environ, LOG_LEVEL_ENV: "ERROR"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True,  # noqa: S603
                            env=env)
    t0 = time.monotonic()
    while proc.poll() is None:
        if stop.wait(0.5):
            proc.terminate()
            proc.wait()
            out.write("training cancelled\n")
            return False
    if proc.returncode != 0 or not world_model_current(cache_dir):
        out.write(f"training the world model failed (exit code {proc.returncode})\n")
        return False
    out.write(f"world model trained in {time.monotonic() - t0:.0f} s and cached at "
              f"{world_model_dir(cache_dir)}\n")
    return True


def demo_label_set() -> dict[str, Any]:
    """The world's label set (one label per activity), every window labelled."""
    from streambind.world.activities import label_set

    return {**label_set(name="world"), "top_k": TOP_K}


class EventTable:
    """The latest event per (device, modality), beside the ground truth, as text."""

    def __init__(self, truth: TruthIndex | None = None) -> None:
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.count = 0
        self.truth = truth if truth is not None else TruthIndex()
        self.accuracy = Accuracy(self.truth)
        self.lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        """Record one event from ``streambind.events``."""
        with self.lock:
            self.latest[(event["device_id"], event["modality"])] = event
            self.count += 1
            self.accuracy.add(event)

    def settle(self) -> None:
        """Score the events whose ground truth has arrived since."""
        with self.lock:
            self.accuracy.settle()

    def render(self, header: str) -> str:
        """The table as text: newest window of each stream, then the running accuracy."""
        with self.lock:
            rows = sorted(self.latest.items())
            count = self.count
            report = self.accuracy.report()
            pending = self.accuracy.pending
        lines = [header, f"{count} events", "",
                 f"{'device':<9} {'modality':<8} {'window end':<11} {'truth':<22} "
                 f"{'':<3} labels (best first)"]
        for (device, modality), event in rows:
            end_s = event["window_end_ns"] / 1e9
            stamp = time.strftime("%H:%M:%S", time.gmtime(end_s)) + f".{int(end_s % 1 * 10)}"
            truth = self.truth.window_activity(device, event["window_start_ns"],
                                               event["window_end_ns"])
            mark = "" if truth is None else ("ok" if top_label(event) == truth else "--")
            labels = ", ".join(f"{x['label']} {x['score']:.2f}" for x in event["labels"])
            lines.append(f"{device:<9} {modality:<8} {stamp:<11} {truth or '(changing)':<22} "
                         f"{mark:<3} {labels}")
        lines += ["", "running accuracy (top-1 label vs the simulator's ground truth, windows "
                  f"inside one activity; chance {1 / 12:.2f}):"]
        for modality, row in report.items():
            acc = "  -  " if row["accuracy"] is None else f"{row['accuracy']:.2f}"
            majority = "-" if row["majority_share"] is None else f"{row['majority_share']:.2f}"
            lines.append(f"  {modality:<8} {acc}  ({row['right']}/{row['scored']} windows; "
                         f"always the commonest activity: {majority}; "
                         f"{row['ambiguous']} not inside one activity)")
        if not report:
            lines.append(f"  (no event scored yet; {pending} waiting for their truth)")
        return "\n".join(lines) + "\n"


def _follow_events(bootstrap: str, topic: str, table: EventTable, stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, metadata_max_age_ms=2000)
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        table.add(json.loads(record.value))
                    except (ValueError, KeyError, TypeError) as exc:
                        logger.warning("skipping an event that is not streambind's: %s", exc)
    finally:
        consumer.close()


def _create_topics(bootstrap: str, names: list[str]) -> None:
    """Create the topics up front: a consumer that joins before its topics exist only sees
    them at a later metadata refresh."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        admin.close()


class StopRequest(threading.Event):
    """Set when the demo should stop; ``signum`` is the signal that asked for it, if any."""

    signum: int | None = None

    @property
    def hung_up(self) -> bool:
        """The terminal was closed: the processes of its group (Ray's among them) got the
        same SIGHUP and are gone, so there is nothing left to drain."""
        return self.signum is not None and self.signum == getattr(signal, "SIGHUP", None)


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or ``--duration``."""
    stop = StopRequest()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for startup
        stop.signum = signum
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):  # a closed terminal: stop as cleanly as on Ctrl-C, or the
        signal.signal(signal.SIGHUP, on_signal)  # broker (its own session) is left running
    try:
        return _run(args, stop, sys.stdout)
    except KeyboardInterrupt:
        sys.stdout.write("\nstopped\n")
        return 130


def _run(args: argparse.Namespace, stop: StopRequest, out: TextIO) -> int:
    from streambind.model.cache import default_cache_dir

    cache_dir = args.cache_dir or str(default_cache_dir())
    model = choose_model(args.model)
    if not prepare_model(model, cache_dir, out, stop):
        return 130 if stop.is_set() else 1
    if stop.is_set():
        return 0

    from streambind.broker import EmbeddedBroker

    logging.getLogger("kafka").setLevel(logging.ERROR)
    started = time.monotonic()
    with ExitStack() as stack:
        # The broker runs in its own session (a Ctrl-C does not reach it): it is stopped
        # last, after the pipeline has drained.
        broker = stack.enter_context(EmbeddedBroker())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streambind-demo-")))
        _create_topics(broker.bootstrap, [*(f"sensors.{m}" for m in SENSOR_MODALITIES),
                                          "streambind.events", "streambind.dlq"])
        # The simulator starts now, while Ray starts: the pipeline reads from the earliest
        # offset, so the first windows are ready as soon as it is up.
        simulator_log = stack.enter_context(open(workdir / "simulator.log", "w"))
        simulator = _start_simulator(args, broker.bootstrap, workdir / "truth.jsonl",
                                     simulator_log)
        stack.callback(_stop_process, simulator, 15.0)  # if startup fails
        out.write(f"broker ready at {broker.bootstrap}, simulator started; starting Ray Serve "
                  f"(model {model})...\n")
        out.flush()
        status, metrics_port = _start_pipeline(stack, broker.bootstrap, model, cache_dir,
                                               workdir, args.num_cpus, stop)
        table = EventTable()
        truth = TruthFollower(workdir / "truth.jsonl", table.truth)
        stack.callback(truth.close)
        events_thread = threading.Thread(
            target=_follow_events, args=(broker.bootstrap, "streambind.events", table, stop),
            daemon=True)
        events_thread.start()
        stack.callback(events_thread.join, 5)
        stack.callback(_stop_process, simulator, 15.0)  # first: no new records while draining
        stack.callback(stop.set)
        if stop.is_set():  # Ctrl-C during startup
            out.write("stopping: simulator, pipeline, Ray, broker...\n")
            return 0
        out.write(f"pipeline up after {time.monotonic() - started:.0f} s; simulating "
                  f"{args.devices} devices (first events in a few seconds)\n")
        out.flush()

        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        interactive = out.isatty()
        while not stop.wait(1.0) and time.monotonic() < deadline:
            stats = status.remote().result(timeout_s=30)["stats"]
            truth.poll()
            table.settle()
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
        out.write("stopping: simulator, pipeline, Ray, broker...\n")
        out.flush()
    out.write("stopped\n")
    return 0


def _start_simulator(args: argparse.Namespace, bootstrap: str, truth_file: Path,
                     log: TextIO) -> subprocess.Popen:
    """``streambind simulate --truth`` paced to the wall clock, in its own session (the demo
    stops it with SIGTERM, not the terminal's Ctrl-C)."""
    return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "streambind", "simulate", "--bootstrap", bootstrap,
         "--devices", str(args.devices), "--duration", str(args.duration or 0),
         "--realtime", "--malformed-share", "0.01", "--seed", str(args.seed),
         "--truth", str(truth_file)],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )


def _start_pipeline(stack: ExitStack, bootstrap: str, model: str, cache_dir: str,
                    workdir: Path, num_cpus: int | None,
                    stop: StopRequest) -> tuple[Any, int]:
    """Local Ray, both Serve applications with the world's label set; (status method of
    the ingest deployment, metrics port). Their shutdown is pushed on ``stack``."""
    import ray
    from ray import serve

    from streambind.config import AppConfig
    from streambind.serve.app import INGEST_APP, INGEST_DEPLOYMENT, deploy

    labels_file = workdir / "labels.json"
    labels_file.write_text(json.dumps(demo_label_set()))
    config = AppConfig.from_dict({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": "streambind-demo"},
        "model": {"source": model, "cache_dir": cache_dir},
        "labels": {"file": str(labels_file)},
        "embedder": {"num_cpus": 0.5},
        "ingest": {"num_cpus": 0.5},
    })
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    stack.callback(ray.shutdown)
    stack.callback(_delete_apps, stop)
    deploy(config)
    status = serve.get_deployment_handle(INGEST_DEPLOYMENT, INGEST_APP).status
    return status, status.remote().result(timeout_s=120)["metrics_port"]


def _delete_apps(stop: StopRequest) -> None:
    """Delete both Serve applications (the ingest replicas drain and commit first); the
    controller goes with the local Ray. ``serve.shutdown()`` would kill the controller while
    this driver's handles still poll it, and Ray would print each failed poll. After a
    hangup Ray's processes are gone and a delete would wait for them forever: skipped."""
    from ray import serve

    if stop.hung_up:
        return

    from streambind.serve.app import EMBEDDER_APP, INGEST_APP

    for app in (INGEST_APP, EMBEDDER_APP):
        serve.delete(app)


def _stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM (the simulator flushes and exits), SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

