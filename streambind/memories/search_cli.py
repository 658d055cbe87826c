"""streambind search: find stored windows by text, sound, image, example, or a sum of them.

Items add up as unit vectors (ImageBind's embedding arithmetic); --minus subtracts. A weight
can follow any item as ``::W`` (``--text "waves::0.5"``). Results are moments: adjacent hits
of one device merged, best first; --json prints one JSON object per moment.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from streambind.memories.query import QueryItem, parse_weighted
from streambind.memories.search import Memories, parse_time
from streambind.memories.store import Filter


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``search`` flags (DESIGN.md "Commands")."""
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default=None,
                        help="rows' model name (default: the store's only model)")
    parser.add_argument("--model-source", default=None,
                        help="model to embed queries with (default: derived from --model)")
    parser.add_argument("--text", nargs="+", action="extend", default=[])
    parser.add_argument("--audio", nargs="+", action="extend", default=[], metavar="F.wav")
    parser.add_argument("--image", nargs="+", action="extend", default=[], metavar="F.jpg")
    parser.add_argument("--like", nargs="+", action="extend", default=[], metavar="WINDOW_ID")
    parser.add_argument("--minus", nargs="+", action="extend", default=[], metavar="T",
                        help="texts to subtract")
    parser.add_argument("--device", nargs="+", action="extend", default=[])
    parser.add_argument("--modality", nargs="+", action="extend", default=[])
    parser.add_argument("--label", default=None, help="only windows whose events carry it")
    parser.add_argument("--since", default=None, help="ISO-8601 UTC or integer ns")
    parser.add_argument("--until", default=None, help="ISO-8601 UTC or integer ns")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--min-score", type=float, default=None)
    parser.add_argument("--windows", action="store_true", help="do not merge into moments")
    parser.add_argument("--gap-s", type=float, default=0.0,
                        help="merge hits of a device at most this far apart")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--export", metavar="PATH", default=None,
                        help="also write the results: PATH.jsonl, PATH.parquet, or a "
                             "directory (both files and the previews as JPEG)")


def items_from_args(args: argparse.Namespace) -> list[QueryItem]:
    """The query items the flags name, in the order text, audio, image, like, minus."""
    items = []
    for kind, values, sign in (("text", args.text, 1.0), ("audio", args.audio, 1.0),
                               ("image", args.image, 1.0), ("like", args.like, 1.0),
                               ("text", args.minus, -1.0)):
        for raw in values:
            value, weight = parse_weighted(raw)
            items.append(QueryItem(kind, value, sign * weight))
    return items


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")


def run(args: argparse.Namespace) -> int:
    """Run one search and print the moments."""
    items = items_from_args(args)
    if not items:
        raise SystemExit("search: give at least one of --text, --audio, --image, --like")
    where = Filter(
        devices=tuple(args.device), modalities=tuple(args.modality),
        since_ns=None if args.since is None else parse_time(args.since),
        until_ns=None if args.until is None else parse_time(args.until))
    memories = Memories(args.store, args.model, model_source=args.model_source)
    moments = memories.search(items, where=where, k=args.k, label=args.label,
                              min_score=args.min_score, merge=not args.windows,
                              gap_ns=int(args.gap_s * 1e9))
    if args.export:
        from streambind.memories.export import export_moments

        export_moments(moments, args.export)
    out = sys.stdout
    for m in moments:
        if args.json:
            out.write(json.dumps(m.to_json(), separators=(",", ":")) + "\n")
        else:
            b = m.best
            out.write(f"{m.score:.4f}  {b.device_id:<16} {_iso(m.moment_start_ns)} .. "
                      f"{_iso(m.moment_end_ns)}  {','.join(m.modalities):<14} "
                      f"{' '.join(m.labels)}  {b.window_id[:12]}\n")
    return 0
