"""``streambind bind``: bind a new sensor to the joint space on Ray Train.

    streambind bind --bootstrap B --modality wrist --kind series --base world --out DIR
    streambind bind export --bootstrap B --modality wrist --kind series --base world \\
        --out pairs.parquet
    streambind bind --pairs pairs.parquet --modality wrist --kind series --base world --out DIR

Reads the camera topic and ``sensors.<name>`` of the same devices, windows both with the
streaming core, pairs each sensor window with the camera window overlapping it, embeds the
camera windows once with the frozen base vision tower, and trains only the new tower with
ImageBind's recipe. Writes a bound-model directory that ``--model DIR`` accepts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from streambind.errors import ConfigError

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bind`` (and ``bind export``)."""
    parser.add_argument("action", nargs="?", choices=["train", "export"], default="train",
                        help="train (default) or export the pairs to Parquet")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers")
    parser.add_argument("--modality", required=True, help="the new sensor's name")
    parser.add_argument("--kind", required=True, choices=["series", "frame"])
    parser.add_argument("--base", default="world", help="base model (world, tiny, huge, DIR)")
    parser.add_argument("--out", required=True, help="output directory (export: .parquet file)")
    parser.add_argument("--pair-with", default="vision", choices=["vision"],
                        help="the frozen tower to bind to")
    parser.add_argument("--topic", help="sensor topic (default sensors.<name>)")
    parser.add_argument("--camera-topic", default="sensors.vision")
    parser.add_argument("--pairs", help="train from a pairs file instead of Kafka")
    parser.add_argument("--window-s", type=float, default=5.0, help="series/frame window")
    parser.add_argument("--sample-rate-hz", type=float, default=100.0,
                        help="series: the tower's input rate (windows are resampled to it)")
    parser.add_argument("--channels", type=int, help="series: channels (default: from data)")
    parser.add_argument("--size-px", type=int, default=224, help="frame: the tower's side")
    parser.add_argument("--width", type=int, default=64, help="tower width")
    parser.add_argument("--depth", type=int, default=2, help="tower depth (blocks)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, help="default: by kind (paper Table 9)")
    parser.add_argument("--block-s", type=float, default=60.0,
                        help="length of the time blocks of the train/validation split")
    parser.add_argument("--val-every", type=int, default=5, help="every Nth block validates")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--storage", help="Ray Train storage path (checkpoints; resumes)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="Kafka read timeout")
    parser.add_argument("--cache-dir", help="model cache directory")


def tower_config(args: argparse.Namespace, channels: int | None = None):  # noqa: ANN201
    """The new tower's config from the flags (temperature sets its logit scale)."""
    from streambind.bind.recipe import temperature_for
    from streambind.model.kinds import FrameConfig, SeriesConfig, check_modality_name

    name = check_modality_name(args.modality)
    temperature = args.temperature or temperature_for(name, args.kind)
    common = {"name": name, "width": args.width, "depth": args.depth, "heads": args.heads,
              "window_s": args.window_s, "logit_scale": 1.0 / temperature}
    if args.kind == "series":
        ch = args.channels or channels
        if not ch:
            raise ConfigError("--channels is needed (no data to read it from)")
        samples = round(args.sample_rate_hz * args.window_s)
        patch = next(p for p in (20, 16, 10, 8, 5, 4, 2, 1) if samples % p == 0)
        return SeriesConfig(**common, channels=ch, sample_rate_hz=args.sample_rate_hz,
                            patch_samples=patch), temperature
    return FrameConfig(**common, height_px=args.size_px, width_px=args.size_px,
                       patch_px=32 if args.size_px % 32 == 0 else 16), temperature


def _channels_from_topic(bootstrap: str, topic: str, timeout_s: float) -> int | None:
    from streambind.sim.kafka_io import read_topic
    from streambind.stream import custom

    for rec in read_topic(bootstrap, topic, until=lambda r: len(r) > 0, timeout_s=timeout_s):
        try:
            chunks = custom.decode("series", rec.key, rec.value, rec.headers,
                                   partition=rec.partition, offset=rec.offset,
                                   now_ns=2**62)
            return int(chunks[0].data.shape[1])
        except Exception:  # noqa: BLE001 - a bad first record: look at no more
            return None
    return None


def export(args: argparse.Namespace, out: Path) -> Path:
    """Read pairs from Kafka and write them to ``out`` (Parquet)."""
    from streambind.bind import pairs
    from streambind.model import load_imagebind

    if not args.bootstrap:
        raise ConfigError("--bootstrap is needed to read pairs from Kafka")
    topic = args.topic or f"sensors.{args.modality}"
    channels = None
    if args.kind == "series" and not args.channels:
        channels = _channels_from_topic(args.bootstrap, topic, args.timeout_s)
    cfg, _ = tower_config(args, channels)
    base = load_imagebind(args.base, modalities=("vision",), cache_dir=args.cache_dir)
    pair_set = pairs.pairs_from_kafka(args.bootstrap, topic, args.camera_topic, cfg, base,
                                      args.base, timeout_s=args.timeout_s)
    logger.info("%d pairs (%d sensor windows without a camera window)", len(pair_set),
                pair_set.dropped)
    return pairs.write_parquet(pair_set, out)


def train(args: argparse.Namespace, pairs_path: Path) -> Path:
    """Train the tower on Ray Train from a pairs file and write the bound-model directory."""
    from streambind.bind import pairs, recipe
    from streambind.bind.train_ray import RayBindConfig, train_on_ray
    from streambind.model import load_imagebind
    from streambind.model.bound import TowerInfo
    from streambind.model.bound_write import save_bound_model
    from streambind.model.kinds import tower_config_from_dict

    meta = pairs.parquet_meta(pairs_path)
    if meta["base"] != args.base:
        raise ConfigError(f"{pairs_path} pairs were embedded by base {meta['base']!r}, "
                          f"not {args.base!r}")
    cfg = tower_config_from_dict(meta["tower"])
    if cfg.modality != args.modality:
        raise ConfigError(f"{pairs_path} holds pairs of {cfg.modality!r}, not {args.modality!r}")
    temperature = 1.0 / float(cfg.logit_scale or 1.0)
    rc = recipe.RecipeConfig(temperature=temperature, steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr,
                             warmup_steps=max(1, args.steps // 15),
                             eval_every=max(1, args.steps // 6))
    ray_cfg = RayBindConfig(num_workers=args.num_workers, use_gpu=args.use_gpu,
                            cpus_per_worker=args.cpus_per_worker,
                            storage_path=args.storage or "", name=f"bind-{cfg.modality}")
    base = load_imagebind(args.base, cache_dir=args.cache_dir)
    tower_state, state, split = train_on_ray(pairs_path, meta, base.embed_dim, rc, ray_cfg,
                                             block_s=args.block_s, val_every=args.val_every)
    tower = base.add_tower(cfg)
    tower.load_state_dict(tower_state)
    data = pairs.read_parquet(pairs_path).data_range()
    metrics = {"val_R@1": state.val_r1[-1][1] if state.val_r1 else None,
               "val_R@1_history": state.val_r1, "final_loss": state.losses[-1],
               "steps": state.step, **split}
    out = save_bound_model(base.eval(), args.out, base=args.base, info={cfg.modality: TowerInfo(
        temperature=temperature, pair_with=args.pair_with, training=data, metrics=metrics)},
        manifest_extra={"trained_by": "streambind bind", "recipe": {
            "lr": rc.lr, "batch_size": rc.batch_size, "betas": list(rc.betas),
            "warmup_steps": rc.warmup_steps, "grad_clip": rc.grad_clip,
            "weight_decay": rc.weight_decay}})
    sys.stdout.write(json.dumps({"model_dir": str(out), "modality": cfg.modality,
                                 "pairs": data["pairs"], **metrics}) + "\n")
    return out


def run(args: argparse.Namespace) -> int:
    """Export, or export-then-train, or train from ``--pairs``."""
    if args.action == "export":
        path = export(args, Path(args.out))
        sys.stdout.write(json.dumps({"pairs_file": str(path)}) + "\n")
        return 0
    if args.pairs:
        train(args, Path(args.pairs))
        return 0
    with tempfile.TemporaryDirectory(prefix="streambind-pairs-") as tmp:
        train(args, export(args, Path(tmp) / "pairs.parquet"))
    return 0
