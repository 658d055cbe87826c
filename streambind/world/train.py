"""The world model: an offline ImageBind whose labels mean something on the synthetic world.

Two stages, as ImageBind itself was built:

1. **CLIP stage.** The vision and text towers of a small preset are trained together on
   the world's camera windows and template captions (CLIP's contrastive loss; since
   captions repeat across windows, every caption of the same activity in the batch is a
   positive, the rest negatives).
2. **Binding.** The vision tower is frozen and its embeddings cached; audio, depth,
   thermal and IMU are each bound to it with :mod:`streambind.bind.recipe` on time-aligned
   (sensor, vision) windows. No sensor ever sees a caption: text -> sensor zero-shot is
   emergent, and :mod:`streambind.bind.evaluate` measures it.

``streambind world --train`` runs this and writes a bound-model directory where the
``world`` model source resolves to (:func:`streambind.model.cache.world_model_dir`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streambind.bind import recipe
from streambind.bind.eval import class_embeddings
from streambind.model import ImageBind, ImageBindConfig, tokenize
from streambind.model.config import (
    AudioConfig,
    DepthConfig,
    ImuConfig,
    TextConfig,
    ThermalConfig,
    VisionConfig,
)
from streambind.world import train_data
from streambind.world.activities import ACTIVITY_NAMES, caption

logger = logging.getLogger(__name__)

CLIP_TEMPERATURE = 0.07  # CLIP's initial temperature, kept fixed here
# Mean and standard deviation of the depth featurizer's output (DepthNorm'd disparity) over
# the world's training windows (0.158 and 0.063 at seed 0). The world's rooms are 3-6 m
# deep, so disparity lies in about [0.05, 0.3]; the depth stem's LayerNorm is blind to a
# patch's level, and without this shift the depth tower bound at chance (loss stuck at
# log(batch), every frame the same embedding). The featurizer itself is unchanged.
DEPTH_INPUT_SHIFT, DEPTH_INPUT_SCALE = 0.16, 0.065


def world_config() -> ImageBindConfig:
    """The ``world`` preset: the tiny preset's widths and depths with larger patches
    (32-pixel image patches, 16x16 spectrogram patches without overlap, 20-sample IMU
    patches: 2.5-4x fewer tokens, so it trains in minutes on CPU) and without the paper's
    heavy stochastic depth and head dropout (0.7 / 0.5 on the IMU), which towers this small
    trained this briefly cannot afford. Inputs stay the featurizers' (224x224 frames,
    128x204 log-mel, 6x2000 IMU, 77-token texts)."""
    return ImageBindConfig(
        embed_dim=32,
        vision=VisionConfig(width=64, depth=2, heads=4, patch_size=(2, 32, 32)),
        text=TextConfig(width=64, depth=2, heads=4),
        audio=AudioConfig(width=64, depth=2, heads=4, drop_path=0.0, stride=16),
        depth=DepthConfig(width=32, depth=2, heads=4, kernel_size=32,
                          input_shift=DEPTH_INPUT_SHIFT, input_scale=DEPTH_INPUT_SCALE),
        thermal=ThermalConfig(width=64, depth=2, heads=4, kernel_size=32),
        imu=ImuConfig(width=32, depth=2, heads=4, drop_path=0.0, head_dropout=0.0,
                      kernel_size=20),
    )


@dataclass(frozen=True)
class WorldTrainConfig:
    """Sizes of the world model's training run (defaults: a few minutes on 2 CPU cores)."""

    # Many short segments rather than few long ones: a segment's windows share their
    # nuisance, and it is the nuisance the towers must learn to ignore.
    segments_per_class: int = 40
    windows_per_segment: int = 2
    val_every: int = 5  # every 5th segment (a contiguous time block) is held out
    clip_steps: int = 400
    bind_steps: int = 250
    batch_size: int = 48
    clip_lr: float = 2e-3
    bind_lr: float = 3e-3
    seed: int = 0
    modalities: tuple[str, ...] = train_data.SENSORS


@dataclass
class WorldTrainResult:
    """The trained model and what was measured while training it."""

    model: ImageBind
    metrics: dict = field(default_factory=dict)
    data: train_data.WorldData | None = None
    split: tuple[np.ndarray, np.ndarray] | None = None


def clip_loss(v: Tensor, t: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Symmetric contrastive loss between images ``v`` (B, E) and captions ``t`` (B, E)
    where every pair with the same label is a positive (soft targets)."""
    v, t = F.normalize(v.float(), dim=-1), F.normalize(t.float(), dim=-1)
    same = (labels[:, None] == labels[None, :]).float()  # (B, B)
    targets = same / same.sum(dim=1, keepdim=True)
    logits = v @ t.T / temperature  # (B, B)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def text_class_embeddings(text_tower: nn.Module) -> Tensor:
    """(C, E) unit vectors: each activity's prompts through the text tower, averaged."""
    with torch.no_grad():
        was = text_tower.training
        text_tower.eval()
        out = class_embeddings([text_tower(tokenize(p)) for p in train_data.prompts()])
        text_tower.train(was)
    return out


def zero_shot_top1(emb: Tensor, class_emb: Tensor, labels: np.ndarray) -> float:
    """Top-1 of embeddings against class embeddings."""
    pred = (F.normalize(emb.float(), dim=-1) @ class_emb.T).argmax(1).numpy()
    return float((pred == labels).mean()) if len(labels) else float("nan")


def train_clip(
    model: ImageBind, data: train_data.WorldData, train_idx: np.ndarray, val_idx: np.ndarray,
    cfg: WorldTrainConfig, *, progress: bool = True,
) -> dict:
    """Stage 1: the vision and text towers, CLIP-style, on the world's camera windows."""
    from tqdm.auto import tqdm

    vision, text = model.towers["vision"], model.towers["text"]
    pair = nn.ModuleDict({"vision": vision, "text": text})
    rc = recipe.RecipeConfig(temperature=CLIP_TEMPERATURE, steps=cfg.clip_steps,
                             batch_size=cfg.batch_size, lr=cfg.clip_lr,
                             warmup_steps=max(1, cfg.clip_steps // 15))
    opt = recipe.make_optimizer(pair, rc)
    rng = np.random.default_rng(cfg.seed + 1)
    x, labels = data.inputs["vision"], torch.as_tensor(data.labels)
    val_top1: list[tuple[int, float]] = []
    bar = tqdm(range(rc.steps), desc="world: vision+text", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(step, rc)
        idx = torch.as_tensor(rng.choice(train_idx, size=rc.batch_size, replace=False))
        tokens = tokenize([caption(ACTIVITY_NAMES[int(c)], rng) for c in labels[idx]])
        pair.train()
        loss = clip_loss(vision(x[idx].float()), text(tokens), labels[idx], rc.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pair.parameters(), rc.grad_clip)
        opt.step()
        if len(val_idx) and ((step + 1) % 50 == 0 or step + 1 == rc.steps):
            top1 = zero_shot_top1(recipe.embed(vision, x[val_idx].float()),
                                  text_class_embeddings(text), data.labels[val_idx])
            val_top1.append((step + 1, top1))
        bar.set_postfix({"loss": f"{float(loss.detach()):.3f}",
                         **({"val_top1": f"{val_top1[-1][1]:.3f}"} if val_top1 else {})},
                        refresh=False)
    return {"steps": rc.steps, "final_loss": float(loss.detach()), "val_top1": val_top1}


def bind_modality(
    model: ImageBind, modality: str, data: train_data.WorldData, vision_emb: Tensor,
    train_idx: np.ndarray, val_idx: np.ndarray, cfg: WorldTrainConfig, *,
    progress: bool = True, shuffle_pairs: bool = False,
) -> recipe.TrainState:
    """Stage 2 for one modality: its tower against the cached frozen vision embeddings.

    ``shuffle_pairs`` is the control: each sensor window is paired with the vision window
    of a random other training moment, which destroys the pairing and nothing else.
    """
    target = vision_emb
    if shuffle_pairs:
        perm = np.random.default_rng(cfg.seed + 7).permutation(train_idx)
        target = vision_emb.clone()
        target[torch.as_tensor(train_idx)] = vision_emb[torch.as_tensor(perm)]
    rc = recipe.RecipeConfig(temperature=recipe.temperature_for(modality),
                             steps=cfg.bind_steps, batch_size=cfg.batch_size, lr=cfg.bind_lr,
                             warmup_steps=max(1, cfg.bind_steps // 15), seed=cfg.seed)
    x = data.inputs[modality].float()
    return recipe.fit(model.towers[modality], x, target, train_idx, val_idx, rc,
                      progress=progress, desc=f"bind {modality}")


def train_world_model(cfg: WorldTrainConfig = WorldTrainConfig(), *,
                      progress: bool = True) -> WorldTrainResult:
    """Generate the world's windows, train vision+text, bind every sensor; in memory."""
    t0 = time.monotonic()
    torch.manual_seed(cfg.seed)
    data = train_data.generate(cfg.segments_per_class, cfg.windows_per_segment, cfg.seed,
                               ("vision", *cfg.modalities), progress=progress)
    train_idx, val_idx = recipe.time_block_split(data.start_ns, data.end_ns, data.block_ns,
                                                 cfg.val_every)
    gen_s = time.monotonic() - t0
    model = ImageBind(world_config())
    metrics: dict = {"windows": len(data), "train_windows": len(train_idx),
                     "val_windows": len(val_idx), "generate_s": round(gen_s, 1)}
    metrics["clip"] = train_clip(model, data, train_idx, val_idx, cfg, progress=progress)
    vision = recipe.freeze(model.towers["vision"])
    vision_emb = recipe.embed(vision, data.inputs["vision"].float())  # cached once
    class_emb = text_class_embeddings(model.towers["text"])
    for m in cfg.modalities:
        state = bind_modality(model, m, data, vision_emb, train_idx, val_idx, cfg,
                              progress=progress)
        emb = recipe.embed(model.towers[m], data.inputs[m][val_idx].float())
        metrics[m] = {"val_R@1": state.val_r1[-1][1] if state.val_r1 else None,
                      "final_loss": state.losses[-1],
                      "val_text_top1": zero_shot_top1(emb, class_emb, data.labels[val_idx]),
                      "temperature": recipe.temperature_for(m)}
    metrics["chance"] = 1 / len(ACTIVITY_NAMES)
    metrics["train_s"] = round(time.monotonic() - t0, 1)
    metrics["config"] = dataclasses.asdict(cfg)
    model.eval()
    return WorldTrainResult(model=model, metrics=metrics, data=data, split=(train_idx, val_idx))


def ensure_world_model(cache_dir: str | Path | None = None, *, force: bool = False,
                       cfg: WorldTrainConfig = WorldTrainConfig(),
                       progress: bool = True) -> Path:
    """The world model's directory, trained and written there first if it is missing or
    was trained by another recipe version (``WORLD_RECIPE_VERSION``)."""
    from streambind.model.cache import WORLD_RECIPE_VERSION, world_model_dir, world_model_recipe

    out = world_model_dir(cache_dir)
    recipe = None if force else world_model_recipe(cache_dir)  # None: none cached (or forced)
    if recipe == WORLD_RECIPE_VERSION:
        logger.info("world model already at %s (pass --force to retrain)", out)
        return out
    if recipe is not None:
        logger.warning("the world model at %s was trained by another version of streambind "
                       "(recipe %s, this one trains %d): retraining it", out, recipe,
                       WORLD_RECIPE_VERSION)
    result = train_world_model(cfg, progress=progress)
    save_world_model(result, out)
    return out


def save_world_model(result: WorldTrainResult, out: Path) -> None:
    """Write the world model as a bound-model directory (manifest + weights)."""
    from streambind.model.bound import TowerInfo
    from streambind.model.bound_write import save_bound_model
    from streambind.model.cache import WORLD_RECIPE_VERSION

    info = {}
    for m in result.model.modalities:
        if isinstance(result.metrics.get(m), dict):
            info[m] = TowerInfo(temperature=recipe.temperature_for(m), pair_with="vision",
                                training={"world_seed": result.metrics["config"]["seed"],
                                          "windows": result.metrics["train_windows"]},
                                metrics=result.metrics[m])
    save_bound_model(result.model, out, base="world", base_weights=True, info=info,
                     manifest_extra={"trained_by": "streambind world --train",
                                     "recipe_version": WORLD_RECIPE_VERSION,
                                     "metrics": result.metrics})
    logger.info("world model written to %s", out)
