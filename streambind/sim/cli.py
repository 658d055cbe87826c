"""Publish synthetic sensor streams (``streambind simulate``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streambind.stream.chunks import MODALITIES

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind simulate`` options."""
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka HOST:PORT")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0, help="event-time seconds")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="with --realtime: event time runs this many times wall time")
    parser.add_argument("--realtime", action="store_true", help="pace sends to event time")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--malformed-share", type=float, default=0.0)
    parser.add_argument("--drop-share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-ns", type=int, default=None, help="event-time origin")


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print a JSON summary on stdout."""
    from streambind.sim.simulator import simulate

    logging.getLogger("kafka").setLevel(logging.WARNING)
    stats = simulate(
        args.bootstrap, args.devices, args.duration, realtime=args.realtime,
        rate_scale=args.rate_scale, modalities=args.modalities,
        malformed_share=args.malformed_share, drop_share=args.drop_share, seed=args.seed,
        start_ns=args.start_ns,
    )
    summary = {"records": stats.records, "malformed": stats.malformed,
               "dropped": stats.dropped, "activities": len(stats.activities)}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
