"""The synthetic world (``streambind world``): list its activities and their prompts.

``streambind world --list`` prints ``{"activities": [{"name", "prompts": [...]}, ...]}``
as one JSON document; ``--label-set`` prints a ready label-set document for
``streambind run --labels`` with one label per activity.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind world`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true",
                       help="print the activities and their prompts as JSON")
    group.add_argument("--label-set", action="store_true",
                       help="print a label set (streambind.labels format) of the activities")
    parser.add_argument("--threshold", type=float, default=None,
                        help="with --label-set: the threshold of every label")
    from streambind.world.train_cli import add_arguments  # --train (the world model)

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the requested document; with no flag, the listing."""
    if getattr(args, "train", False):
        from streambind.world.train_cli import run_train

        return run_train(args)
    from streambind.world.activities import label_set, listing

    if args.label_set:
        extra = {} if args.threshold is None else {"threshold": args.threshold}
        doc = label_set(**extra)
    else:
        doc = listing()
    sys.stdout.write(json.dumps(doc, indent=None) + "\n")
    return 0
