"""Publish the synthetic world's sensor streams (``streambind simulate``).

Records are streamed as they are generated: memory stays bounded and ``--duration 0``
runs until SIGINT or SIGTERM, which stop it cleanly (what was sent is flushed, a JSON
summary is printed). ``--truth FILE`` writes the ground truth as JSON lines
``{"device_id", "start_ns", "end_ns", "activity"}``, one per activity segment, flushed as
each segment begins (times in the device's clock, as its records carry them).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from contextlib import ExitStack

from streambind.stream.chunks import MODALITIES

logger = logging.getLogger(__name__)


def _offset(text: str) -> tuple[str, float]:
    device, sep, seconds = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected DEVICE=SECONDS, got {text!r}")
    return device, float(seconds)


def _backlog(text: str):
    from streambind.sim.simulator import Backlog

    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected DEVICE:START_S:DURATION_S, got {text!r}")
    return Backlog(parts[0], float(parts[1]), float(parts[2]))


def _time_ns(text: str) -> int:
    from datetime import datetime

    if text.lstrip("-").isdigit():
        return int(text)
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ns or ISO-8601 UTC, got {text!r}") from None
    return round(stamp.timestamp() * 1e9)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind simulate`` options."""
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka HOST:PORT")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="event-time seconds; 0 runs until stopped (SIGINT/SIGTERM)")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="with --realtime: event time runs this many times wall time")
    parser.add_argument("--realtime", action="store_true", help="pace sends to event time")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--malformed-share", type=float, default=0.0)
    parser.add_argument("--drop-share", type=float, default=0.01)
    parser.add_argument("--reorder-share", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-ns", type=_time_ns, default=None,
                        help="event-time origin (ns or ISO-8601 UTC; default: now)")
    parser.add_argument("--truth", help="write ground-truth segments here (JSON lines)")
    parser.add_argument("--clock-offset", type=_offset, action="append", default=[],
                        metavar="DEVICE=SECONDS", help="shift a device's clock (repeatable)")
    parser.add_argument("--backlog", type=_backlog, action="append", default=[],
                        metavar="DEVICE:START_S:DURATION_S",
                        help="device offline for a while, then uploads its buffer (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print a JSON summary on stdout."""
    from streambind.sim.simulator import TruthWriter, simulate

    logging.getLogger("kafka").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        truth = None
        if args.truth:
            truth = TruthWriter(stack.enter_context(open(args.truth, "w", encoding="utf-8")))
        stats = simulate(
            args.bootstrap, args.devices, args.duration, realtime=args.realtime,
            rate_scale=args.rate_scale, modalities=args.modalities,
            malformed_share=args.malformed_share, drop_share=args.drop_share,
            reorder_share=args.reorder_share, seed=args.seed, start_ns=args.start_ns,
            truth=truth, clock_offsets_s=dict(args.clock_offset), backlogs=args.backlog,
            stop=stop,
        )
    summary = {"records": stats.records, "malformed": stats.malformed,
               "dropped": stats.dropped, "activities": stats.segments,
               "stopped": stop.is_set()}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
