"""Command-line entry point.

Each subcommand lives in its own module exposing ``configure_parser(parser)`` and
``run(args) -> int``. The module is imported only when its subcommand is chosen, so
``streambind broker`` starts without importing torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from streambind.tuning import prefer_huge_page_tensors

COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("streambind.broker", "run the embedded Kafka-compatible broker"),
    "simulate": ("streambind.sim.cli", "publish synthetic sensor streams"),
    "run": ("streambind.serve.cli", "run the pipeline on Ray Serve"),
    "demo": ("streambind.demo", "broker + simulator + pipeline with a live table"),
    "world": ("streambind.world.cli", "the synthetic world: activities and prompts"),
    "bind": ("streambind.bind.cli", "bind a new sensor to the space (Ray Train)"),
    "eval": ("streambind.bind.eval_cli", "zero-shot accuracy and retrieval vs controls"),
    "remember": ("streambind.memories.remember_cli", "store embedded windows as memories"),
    "search": ("streambind.memories.search_cli", "search memories by text, sound, image, example"),
    "memories": ("streambind.memories.http", "memories serve: HTTP API and web page for search"),
}

BENCHES: dict[str, tuple[str, str]] = {
    "model": ("streambind.bench.model", "forward throughput per tower vs reference attention"),
    "features": ("streambind.bench.features", "batched featurizers vs per-clip loops"),
    "stream": ("streambind.bench.stream", "streaming core vs raw kafka-python consume"),
    "pipeline": ("streambind.bench.pipeline", "end-to-end windows/s vs embedder throughput"),
    "gpu": ("streambind.bench.gpu", "GPU figures: towers, and the core feeding the model"),
    "memories": ("streambind.bench.memories", "memories store: recall vs exact, ingest, freshness"),
    "memories-quality": ("streambind.bench.memories_quality",
                         "memories on the world: precision@10 per query kind, few-shot labels"),
}


def _usage(table: dict[str, tuple[str, str]], prefix: str) -> str:
    width = max(len(name) for name in table)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in table.items())
    return f"usage: {prefix} COMMAND [options]\n\ncommands:\n{rows}\n"


def _dispatch(module_name: str, prog: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__)
    module.configure_parser(parser)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


LOG_LEVEL_ENV = "STREAMBIND_LOG_LEVEL"


def log_level(value: str | None) -> int | None:
    """The logging level named by ``value`` (``DEBUG``, ``info``, ``WARNING``, ...; None or
    empty: ``INFO``), or None when it names no level."""
    level = logging.getLevelName((value or "INFO").strip().upper())
    return level if isinstance(level, int) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streambind`` command line; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prefer_huge_page_tensors()
    level = log_level(os.environ.get(LOG_LEVEL_ENV))
    logging.basicConfig(
        level=level or logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level is None:
        logging.getLogger(__name__).warning("%s=%r names no logging level; using INFO",
                                            LOG_LEVEL_ENV, os.environ.get(LOG_LEVEL_ENV))
    commands = {**COMMANDS, "bench": ("", "benchmarks: " + ", ".join(BENCHES))}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        sys.stdout.write(_usage(commands, "streambind"))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name != "bench":
        return _dispatch(COMMANDS[name][0], f"streambind {name}", rest)
    if not rest or rest[0] not in BENCHES:
        sys.stdout.write(_usage(BENCHES, "streambind bench"))
        return 0 if rest and rest[0] in ("-h", "--help") else 2
    return _dispatch(BENCHES[rest[0]][0], f"streambind bench {rest[0]}", rest[1:])
