"""``streambind world --train``: train the world model and cache it (reused if present).

:func:`add_arguments` adds the flags to the ``world`` command's parser and
:func:`run_train` runs them; the ``world`` command (``streambind.world.cli``) calls both.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training flags of ``streambind world``."""
    group = parser.add_argument_group("training the world model")
    group.add_argument("--train", action="store_true",
                       help="train the world model into the cache (reused if present)")
    group.add_argument("--force", action="store_true", help="retrain even if it is cached")
    group.add_argument("--cache-dir", help="model cache directory (default $STREAMBIND_CACHE)")
    group.add_argument("--clip-steps", type=int, help="vision+text steps")
    group.add_argument("--bind-steps", type=int, help="steps per bound modality")
    group.add_argument("--segments-per-class", type=int, help="training segments per activity")
    group.add_argument("--seed", type=int, default=0, help="training seed")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    """Train (or find) the world model; prints its directory and validation metrics."""
    import dataclasses

    from streambind.model.bound import read_manifest
    from streambind.world.train import WorldTrainConfig, ensure_world_model

    changes = {k: v for k, v in (("clip_steps", args.clip_steps),
                                 ("bind_steps", args.bind_steps),
                                 ("segments_per_class", args.segments_per_class),
                                 ("seed", args.seed)) if v is not None}
    cfg = dataclasses.replace(WorldTrainConfig(), **changes)
    path = ensure_world_model(args.cache_dir, force=args.force, cfg=cfg,
                              progress=not args.no_progress)
    metrics = read_manifest(path).get("extra", {}).get("metrics", {})
    summary = {m: metrics[m] for m in cfg.modalities if m in metrics}
    sys.stdout.write(json.dumps({"model_dir": str(path), "chance": metrics.get("chance"),
                                 "train_s": metrics.get("train_s"), "bound": summary}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m streambind.world.train_cli``)."""
    parser = argparse.ArgumentParser(prog="streambind world", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.train = True
    return run_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
