"""streambind remember: consume streambind.embeddings (and events' labels) into a memories store.

Also: --forget-device D deletes a device's memories; --retention-s S deletes windows that
ended longer ago (checked with compaction and index refresh every --optimize-every-s).
"""

from __future__ import annotations

import argparse
import logging
import signal

from streambind.memories.remember import Maintenance, RememberConfig, Rememberer
from streambind.memories.store import open_store

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``remember`` flags (DESIGN.md "Commands")."""
    parser.add_argument("--bootstrap", required=False, help="Kafka bootstrap servers")
    parser.add_argument("--store", required=True,
                        help="store URI: a directory, s3://..., qdrant://host:6333, "
                             "qdrant+local://PATH")
    parser.add_argument("--group", default="streambind-remember")
    parser.add_argument("--embeddings-topic", default="streambind.embeddings")
    parser.add_argument("--events-topic", default="streambind.events",
                        help="labels come from here; '' disables")
    parser.add_argument("--dlq-topic", default="streambind.dlq", help="'' disables")
    parser.add_argument("--batch-rows", type=int, default=RememberConfig.batch_rows)
    parser.add_argument("--batch-wait-s", type=float, default=1.0)
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--no-fusion", action="store_true", help="store no fused windows")
    parser.add_argument("--optimize-every-s", type=float, default=60.0,
                        help="compaction, index refresh and retention period")
    parser.add_argument("--retention-s", type=float, default=None,
                        help="keep windows that ended at most this long ago")
    parser.add_argument("--max-idle-s", type=float, default=None,
                        help="exit after this long with nothing to consume")
    parser.add_argument("--forget-device", metavar="DEVICE", default=None,
                        help="delete every memory of DEVICE (all models) and exit")


def run(args: argparse.Namespace) -> int:
    """Run the consumer until SIGTERM/SIGINT (or --max-idle-s), or a one-off deletion."""
    store = open_store(args.store)
    if args.forget_device is not None:
        removed = sum(store.delete(m, device_id=args.forget_device) for m in store.models())
        print(f"removed {removed} memories of {args.forget_device}")  # noqa: T201 (CLI output)
        return 0
    if not args.bootstrap:
        raise SystemExit("remember: --bootstrap is required")
    config = RememberConfig(
        bootstrap=args.bootstrap, group=args.group, embeddings_topic=args.embeddings_topic,
        events_topic=args.events_topic or None, dlq_topic=args.dlq_topic or None,
        batch_rows=args.batch_rows, batch_wait_s=args.batch_wait_s,
        max_poll_records=args.max_poll_records,
        fusion=not args.no_fusion, optimize_every_s=args.optimize_every_s,
        retention_s=args.retention_s)
    rememberer = Rememberer(store, config)
    maintenance = Maintenance(store, config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: rememberer.stop())
    maintenance.start()
    try:
        rows = rememberer.run(max_idle_s=args.max_idle_s)
    finally:
        maintenance.stop()
    logger.info("remember stopped after %d rows", rows)
    return 0
