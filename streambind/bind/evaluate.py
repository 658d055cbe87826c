"""Evaluating a model on the world's labelled windows, beside chance and two controls.

For each modality: zero-shot top-1 of text -> modality on held-out windows (a seed the
model never trained on: new segments, new nuisance), next to

- **chance** (the majority class share),
- the **untrained tower** (same architecture, random weights): what the architecture and
  featurizer give for free,
- the **shuffled-pairs control**: a tower bound by the same recipe, for the same steps,
  against the same frozen vision tower, on pairs whose sensor and camera windows were
  shuffled. It sees the same data and the same targets, only the pairing is destroyed;
  if binding works because of the pairing, it stays near chance.

Cross-modal retrieval R@1/R@5 between two modalities on the held-out moments, and the
agreement of a modality's labels with the camera's, complete the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streambind.bind import eval as ev
from streambind.bind import recipe
from streambind.model import ImageBind

logger = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1000  # held-out world windows come from seeds the training never used


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of an evaluation on the world."""

    segments_per_class: int = 6
    windows_per_segment: int = 3
    seed: int = EVAL_SEED_OFFSET
    controls: bool = True
    control_steps: int | None = None  # default: the world model's bind steps


def _tower_embeddings(model: ImageBind, modality: str, x: torch.Tensor) -> torch.Tensor:
    return recipe.embed(model.towers[modality], x.float())


def untrained_tower(model: ImageBind, modality: str, seed: int = 0) -> ImageBind:
    """A model with only ``modality``'s tower, freshly initialised (the untrained control)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ImageBind(model.config, (modality,)).eval()


def shuffled_control(model: ImageBind, modality: str, steps: int, seed: int = 0,
                     progress: bool = False) -> ImageBind:
    """Bind a fresh ``modality`` tower to ``model``'s frozen vision tower on shuffled pairs
    of the world's training windows (same recipe, same steps as the real binding)."""
    from streambind.world import train as wt
    from streambind.world import train_data

    cfg = wt.WorldTrainConfig(bind_steps=steps, seed=seed, modalities=(modality,))
    data = train_data.generate(cfg.segments_per_class, cfg.windows_per_segment, cfg.seed,
                               ("vision", modality))
    train_idx, val_idx = recipe.time_block_split(data.start_ns, data.end_ns, data.block_ns,
                                                 cfg.val_every)
    vision_emb = recipe.embed(model.towers["vision"], data.inputs["vision"].float())
    control = untrained_tower(model, modality, seed=seed + 1)
    control.towers["vision"] = model.towers["vision"]
    wt.bind_modality(control, modality, data, vision_emb, train_idx, val_idx, cfg,
                     progress=progress, shuffle_pairs=True)
    return control.eval()


def evaluate_world(
    model: ImageBind,
    modalities: Sequence[str],
    cfg: EvalConfig = EvalConfig(),
    *,
    retrieval_pairs: Sequence[tuple[str, str]] = (),
    plot_dir: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Zero-shot top-1 per modality (with controls), retrieval and agreement on held-out
    world windows. Returns a JSON-ready report; writes PNGs to ``plot_dir`` if given."""
    from streambind.world import train as wt
    from streambind.world import train_data

    needed = sorted({*modalities, *(m for p in retrieval_pairs for m in p), "vision"})
    data = train_data.generate(cfg.segments_per_class, cfg.windows_per_segment, cfg.seed,
                               tuple(needed))
    class_emb = wt.text_class_embeddings(model.towers["text"])
    classes = data.classes
    report: dict = {"windows": len(data), "classes": len(classes), "zero_shot": {},
                    "retrieval": {}, "agreement": {}}
    embeddings = {m: _tower_embeddings(model, m, data.inputs[m]) for m in needed}
    results = {m: ev.zero_shot(m, embeddings[m], class_emb, data.labels, classes)
               for m in needed}
    steps = cfg.control_steps or _bind_steps(model)
    for m in modalities:
        row = results[m].as_dict()
        if cfg.controls and m not in ("vision", "text"):
            untrained = untrained_tower(model, m)
            row["untrained_top1"] = ev.zero_shot(
                m, _tower_embeddings(untrained, m, data.inputs[m]), class_emb, data.labels,
                classes).top1
            control = shuffled_control(model, m, steps, progress=progress)
            row["shuffled_top1"] = ev.zero_shot(
                m, _tower_embeddings(control, m, data.inputs[m]), class_emb, data.labels,
                classes).top1
            row["control_steps"] = steps
        report["zero_shot"][m] = row
        if m != "vision":
            report["agreement"][f"{m}:vision"] = ev.agreement(
                results[m].predictions, results["vision"].predictions, len(classes))
        if plot_dir is not None:
            row["plots"] = [str(p) for p in ev.plot(results[m], plot_dir)]
    for a, b in retrieval_pairs:
        report["retrieval"][f"{a}->{b}"] = ev.retrieval(embeddings[a], embeddings[b])
    return report


def _bind_steps(model: ImageBind) -> int:
    """The bind steps the model's own towers were trained with (its manifest), so the
    shuffled control gets exactly the same budget."""
    from streambind.world.train import WorldTrainConfig

    manifest = getattr(model, "manifest", None) or {}
    steps = manifest.get("extra", {}).get("metrics", {}).get("config", {}).get("bind_steps")
    return int(steps) if steps else WorldTrainConfig().bind_steps


def format_report(report: dict) -> str:
    """A human-readable table of :func:`evaluate_world`'s report."""
    lines = [f"held-out windows: {report['windows']}, classes: {report['classes']}",
             f"{'modality':<10} {'top-1':>6} {'chance':>6} {'shuffled':>8} {'untrained':>9}"]
    for m, row in report["zero_shot"].items():
        def fmt(key: str, row: dict = row) -> str:
            return f"{row[key]:.3f}" if row.get(key) is not None else "-"
        lines.append(f"{m:<10} {fmt('top1'):>6} {fmt('chance'):>6} {fmt('shuffled_top1'):>8} "
                     f"{fmt('untrained_top1'):>9}")
    for pair, r in report["retrieval"].items():
        lines.append(f"retrieval {pair}: R@1 {r['R@1']:.3f} R@5 {r['R@5']:.3f} "
                     f"(chance {r['chance_R@1']:.3f} / {r['chance_R@5']:.3f}, n={r['n']})")
    for pair, r in report["agreement"].items():
        lines.append(f"agreement {pair}: {r['agreement']:.3f} (chance {r['chance']:.3f})")
    return "\n".join(lines)


def top1_array(report: dict, key: str = "top1") -> np.ndarray:
    """One figure per modality of a report, in order (tests and plots)."""
    return np.array([row.get(key, np.nan) for row in report["zero_shot"].values()])
