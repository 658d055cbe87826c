"""Memories on the synthetic world: precision@10 of text, audio-file, stored-window and
arithmetic queries beside chance, and k-shot label accuracy vs zero-shot.

Uses the world model (``--model world``: trained by ``streambind world --train`` and cached;
or any bound-model directory) and a fresh LanceDB store in a temporary directory. See
:mod:`streambind.memories.quality` for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bench memories-quality``."""
    from streambind.memories.quality import QualityConfig

    d = QualityConfig()
    parser.add_argument("--model", default="world", help="world, or a bound-model directory")
    parser.add_argument("--cache-dir", default=None, help="model cache (default: the usual)")
    parser.add_argument("--segments-per-class", type=int, default=d.segments_per_class)
    parser.add_argument("--windows-per-segment", type=int, default=d.windows_per_segment)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--modalities", nargs="+", default=list(d.modalities))
    parser.add_argument("-k", type=int, default=d.k)
    parser.add_argument("--shots", type=int, nargs="+", default=list(d.shots))
    parser.add_argument("--draws", type=int, default=d.draws)
    parser.add_argument("--text-weight", type=float, default=d.text_weight)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print it."""
    from streambind.config import ModelSettings
    from streambind.memories.lance import LanceStore
    from streambind.memories.quality import QualityConfig, evaluate, format_report
    from streambind.serve.embedder import ModelRunner

    os.environ.setdefault("RUST_LOG", "error")
    cfg = QualityConfig(segments_per_class=args.segments_per_class,
                        windows_per_segment=args.windows_per_segment, seed=args.seed,
                        modalities=tuple(args.modalities), k=args.k, shots=tuple(args.shots),
                        draws=args.draws, text_weight=args.text_weight)
    runner = ModelRunner(ModelSettings(source=args.model, cache_dir=args.cache_dir,
                                       device="cpu"))
    with tempfile.TemporaryDirectory(prefix="streambind-quality-") as tmp:
        report = evaluate(runner, LanceStore(str(Path(tmp) / "store")), cfg, Path(tmp))
    sys.stdout.write((json.dumps(report) if args.json else format_report(report)) + "\n")
    return 0
