"""``streambind eval``: how well a model's towers label the world, beside chance and controls.

    streambind eval --model world --modality audio --modality imu --plot figures/

Held-out windows are rendered from the world with a seed the model never trained on; for
each modality the zero-shot top-1 (text -> modality) is printed beside chance, an
untrained tower and a tower bound on shuffled pairs (same recipe and steps), then the
cross-modal retrieval R@1/R@5 of ``--retrieval A:B`` and each modality's agreement with
the camera's labels.

With ``--truth FILE`` (and ``--bootstrap``), a bound sensor is evaluated on your own
recording instead: its windows from Kafka, labelled by the file
(:mod:`streambind.bind.eval_stream`)::

    streambind eval --model wrist-model --modality wrist --bootstrap B --truth labels.jsonl \
        [--topic sensors.wrist] [--labels labels.yaml] [--plot DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from streambind.errors import ConfigError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind eval``."""
    parser.add_argument("--model", default="world", help="model: world, a directory, a preset")
    parser.add_argument("--modality", action="append", dest="modalities",
                        help="modality to evaluate (repeatable; default: every sensor tower)")
    parser.add_argument("--retrieval", action="append", default=[], metavar="A:B",
                        help="cross-modal retrieval between two modalities (repeatable)")
    parser.add_argument("--windows-per-class", type=int, default=18,
                        help="held-out windows per activity (3 per segment)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the held-out world")
    parser.add_argument("--no-controls", action="store_true",
                        help="skip the untrained and shuffled-pairs controls")
    parser.add_argument("--control-steps", type=int, help="steps of the shuffled control")
    parser.add_argument("--plot", metavar="DIR", help="write confusion and per-class PNGs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--cache-dir", help="model cache directory")
    parser.add_argument("--truth", metavar="FILE",
                        help="labels (JSON lines device_id/start_ns/end_ns/activity): evaluate "
                             "bound sensors on their Kafka topics instead of the world")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (with --truth)")
    parser.add_argument("--topic", help="with --truth: the sensor topic (default sensors.NAME)")
    parser.add_argument("--labels", metavar="FILE",
                        help="with --truth: label set file (default: one label per activity)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="Kafka read timeout")


def run_stream(args: argparse.Namespace) -> int:
    """``--truth``: each bound sensor of ``--modality`` on its topic, against the labels."""
    from streambind.bind.eval_stream import evaluate_stream, format_stream_report, read_truth
    from streambind.labels import LabelSet
    from streambind.model import load_imagebind

    if not args.bootstrap or not args.modalities:
        raise ConfigError("--truth needs --bootstrap and --modality (the bound sensor)")
    if args.topic and len(args.modalities) > 1:
        raise ConfigError("--topic names one sensor's topic: pass one --modality with it")
    segments = read_truth(args.truth)
    labels = LabelSet.from_file(args.labels) if args.labels else None
    model = load_imagebind(args.model, cache_dir=args.cache_dir)
    reports = [evaluate_stream(model, m, args.bootstrap, args.topic or f"sensors.{m}",
                               segments, labels, timeout_s=args.timeout_s,
                               controls=not args.no_controls, plot_dir=args.plot)
               for m in args.modalities]
    text = "\n".join(format_stream_report(r) for r in reports)
    sys.stdout.write((json.dumps({"stream": reports}) if args.json else text) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the report."""
    if args.truth:
        return run_stream(args)
    from streambind.bind.evaluate import EvalConfig, evaluate_world, format_report
    from streambind.model import load_imagebind
    from streambind.world.train_data import SENSORS

    pairs = []
    for spec in args.retrieval:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b:
            raise ConfigError(f"--retrieval wants A:B (two modalities), got {spec!r}")
        pairs.append((a, b))
    model = load_imagebind(args.model, cache_dir=args.cache_dir)
    modalities = args.modalities or [m for m in SENSORS if m in model.towers]
    missing = sorted({*modalities, *(m for p in pairs for m in p)} - set(model.towers))
    if missing:
        raise ConfigError(f"the model has no {', '.join(missing)} tower")
    segments = max(1, args.windows_per_class // 3)
    cfg = EvalConfig(segments_per_class=segments, windows_per_segment=3, seed=args.seed,
                     controls=not args.no_controls, control_steps=args.control_steps)
    report = evaluate_world(model, modalities, cfg, retrieval_pairs=pairs, plot_dir=args.plot)
    sys.stdout.write((json.dumps(report) if args.json else format_report(report)) + "\n")
    return 0
