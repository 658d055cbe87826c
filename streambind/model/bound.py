"""Bound-model directories: a base model plus towers bound to its space, and a manifest.

``streambind bind`` (and ``streambind world --train``) write one with
:func:`streambind.model.bound_write.save_bound_model`; ``load_imagebind(DIR)`` and
``--model DIR`` read it::

    DIR/manifest.json      what the model is (below)
    DIR/base.pt            the base towers' weights, when they are part of this model
    DIR/tower.<name>.pt    one file per bound tower: the tower's state dict

Weights are ``torch.save`` of float32 state dicts, read with ``torch.load(weights_only=True)``
only after their SHA-256 matches the manifest. ``manifest.json``::

    {"format": "streambind.model", "version": 1, "created_at": "2026-12-01T11:00:00Z",
     "embed_dim": 32,
     "base": {"name": "tiny", "config": {...}, "modalities": ["vision", "text"]},
         # or {"weights": "base.pt", "sha256": "...", "derived_from": "tiny", ...}
     "base_towers": {"audio": {"temperature": 0.05, ...}},   # info on retrained base towers
     "towers": [{"modality": "radar", "kind": "series", "config": {...},
                 "input": {"kind": "series", "window_s": 5.0, "shape": [4, 2000],
                           "sample_rate_hz": 400.0, "channels": 4},
                 "temperature": 0.2, "logit_scale": 5.0, "pair_with": "vision",
                 "weights": "tower.radar.pt", "sha256": "...",
                 "training": {"start_ns": ..., "end_ns": ..., ...}, "metrics": {...}}],
     "extra": {...}}

A named base (``tiny``, ``huge-untrained``: deterministic; ``huge``: the official file) is
referenced by name; any other base (the world model, a ``.pth`` file, another directory)
has its weights copied in, so a directory never depends on a path of the machine it was
made on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from streambind.errors import CheckpointError, ConfigError
from streambind.model.cache import (
    MANIFEST_NAME,
    sha256_file,
    world_model_current,
    world_model_dir,
)
from streambind.model.config import MODEL_MODALITIES, ImageBindConfig
from streambind.model.imagebind import ImageBind
from streambind.model.keys import load_official_state_dict
from streambind.model.kinds import BoundTowerConfig, tower_config_from_dict

logger = logging.getLogger(__name__)

FORMAT = "streambind.model"
VERSION = 1
WORLD = "world"
#: Bases referenced by name: reproducible without their weights being copied.
NAMED_BASES = ("tiny", "huge-untrained", "huge")
BASE_WEIGHTS = "base.pt"
MAX_MANIFEST_BYTES = 4 << 20
_FILE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class WorldModelMissingError(CheckpointError):
    """``--model world`` was asked for, but the world model has not been built yet."""


@dataclass(frozen=True)
class TowerInfo:
    """What a manifest records about a trained tower besides its weights and config.

    ``temperature`` defaults to 1 / the tower's logit scale and must agree with it;
    ``training`` holds the data range (e.g. ``start_ns``, ``end_ns``, devices, pairs) and
    ``metrics`` the validation figures; both must be JSON.
    """

    temperature: float | None = None
    pair_with: str = "vision"
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)


def tower_logit_scale(model: ImageBind, modality: str) -> float | None:
    """The logit scale of ``modality``'s head (capped at 100, as the model does), or None."""
    buf = model.towers[modality].head.log_logit_scale
    return None if buf is None else min(float(buf.detach().float().exp()), 100.0)


# --------------------------------------------------------------------------- reading


def resolve_model_dir(
    source: object, cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The bound-model directory ``source`` names (``"world"`` or a directory), else None.

    Raises :class:`WorldModelMissingError` for ``"world"`` when it is not built yet.
    """
    if isinstance(source, str) and source == WORLD:
        path = world_model_dir(cache_dir)
        if not (path / MANIFEST_NAME).is_file():
            raise WorldModelMissingError(
                f"the world model is not built yet: run `streambind world --train` (minutes "
                f"on a CPU) to train it into {path}; set $STREAMBIND_CACHE (or the model's "
                "cache_dir) if it was built elsewhere"
            )
        if not world_model_current(cache_dir):
            logger.warning("the world model at %s was trained by another version of "
                           "streambind: run `streambind world --train --force` to retrain it",
                           path)
        return path
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        return Path(source)
    return None


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path / MANIFEST_NAME}: {why}")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated manifest of the bound-model directory ``path`` (no weights are read)."""
    path = Path(path)
    file = path / MANIFEST_NAME
    if not file.is_file():
        raise CheckpointError(f"{path} is not a bound-model directory (no {MANIFEST_NAME})")
    if file.stat().st_size > MAX_MANIFEST_BYTES:
        raise _fail(path, f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _fail(path, f"not a {FORMAT} manifest")
    if doc.get("version") != VERSION:
        raise _fail(path, f"version {doc.get('version')!r}; this streambind reads {VERSION}")
    base = doc.get("base")
    if not isinstance(base, dict) or not isinstance(doc.get("towers"), list):
        raise _fail(path, "needs a base object and a towers list")
    if ("name" in base) == ("weights" in base):
        raise _fail(path, "the base needs exactly one of name and weights")
    if "name" in base and base["name"] not in NAMED_BASES:
        raise _fail(path, f"unknown base {base['name']!r}; expected one of {NAMED_BASES}")
    mods = base.get("modalities")
    if not isinstance(mods, list) or not set(mods) <= set(MODEL_MODALITIES):
        raise _fail(path, f"bad base modalities {mods!r}")
    for entry in [base] * ("weights" in base) + doc["towers"]:
        if not isinstance(entry, dict):
            raise _fail(path, "a tower entry must be an object")
        name = entry.get("weights")
        if not isinstance(name, str) or not _FILE_RE.fullmatch(name):
            raise _fail(path, f"bad weights file name {name!r} (a plain name in the directory)")
        if not isinstance(entry.get("sha256"), str):
            raise _fail(path, f"{name}: no sha256")
    return doc


def manifest_towers(doc: Mapping[str, Any], path: Path) -> list[BoundTowerConfig]:
    """The bound towers' configs of a manifest, in its order."""
    configs = []
    for entry in doc["towers"]:
        try:
            cfg = tower_config_from_dict(entry.get("config"))
        except ConfigError as exc:
            raise _fail(path, f"bad tower config: {exc}") from exc
        if cfg.modality != entry.get("modality") or cfg.kind != entry.get("kind"):
            raise _fail(path, f"tower {entry.get('modality')!r}: name or kind disagrees with "
                        "its config")
        configs.append(cfg)
    return configs


def bound_tower_configs(
    source: object, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, BoundTowerConfig]:
    """The bound towers (name -> config, with its input spec) of a model source, without
    loading weights: empty for a preset or a checkpoint file. For ``streambind run``,
    which consumes ``sensors.<name>`` for each."""
    path = resolve_model_dir(source, cache_dir)
    if path is None:
        return {}
    return {c.modality: c for c in manifest_towers(read_manifest(path), path)}


def _read_weights(path: Path, entry: Mapping[str, Any]) -> dict[str, Tensor]:
    file = path / entry["weights"]
    if not file.is_file():
        raise _fail(path, f"{entry['weights']} is missing")
    actual = sha256_file(file)
    if actual != entry["sha256"].lower():
        raise CheckpointError(
            f"{file} has SHA-256 {actual} but the manifest says {entry['sha256']}: the file "
            "is corrupt or was replaced; refusing to load it"
        )
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read {file}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{file} does not hold a state dict of tensors")
    return dict(obj)


def load_bound_model(
    path: str | os.PathLike[str],
    *,
    modalities: Iterable[str] | None = None,
    load_named_base: Callable[[str, list[str], ImageBindConfig], Mapping[str, Tensor]],
) -> ImageBind:
    """Build the model of the bound-model directory ``path`` on the CPU, in eval mode.

    ``load_named_base(name, modalities, config)`` returns the state dict (either key layout)
    of a named base's towers, checking that ``config`` is that base's
    (:func:`streambind.model.load_imagebind` passes its own loader).
    Every weights file is checked against the manifest's SHA-256, and loading is strict:
    a missing, unexpected or misshapen tensor is a ``CheckpointError``.
    """
    path = Path(path)
    doc = read_manifest(path)
    bound = manifest_towers(doc, path)
    base = doc["base"]
    try:
        base_config = ImageBindConfig.from_base_dict(base.get("config"))
        config = base_config.with_towers(*bound)
    except ConfigError as exc:
        raise _fail(path, f"bad model config: {exc}") from exc
    if config.embed_dim != doc.get("embed_dim"):
        raise _fail(path, "embed_dim disagrees with the base config")
    available = tuple(base["modalities"]) + tuple(c.modality for c in bound)
    wanted = available if modalities is None else tuple(modalities)
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)} tower (it has "
                              f"{', '.join(available)})")
    base_wanted = [m for m in base["modalities"] if m in wanted]
    with torch.device("meta"):
        model = ImageBind(config, wanted)
    state: dict[str, Tensor] = {}
    if base_wanted and "weights" in base:
        state.update(_read_weights(path, base))
    elif base_wanted:
        state.update(load_named_base(base["name"], base_wanted, base_config))
    for cfg, entry in zip(bound, doc["towers"], strict=True):
        if cfg.modality in wanted:
            tower_state = _read_weights(path, entry)
            state.update({f"towers.{cfg.modality}.{k}": v for k, v in tower_state.items()})
    load_official_state_dict(model, state)
    for cfg, entry in zip(bound, doc["towers"], strict=True):
        if cfg.modality in wanted:
            scale = tower_logit_scale(model, cfg.modality)
            if scale is not None and not math.isclose(scale, entry.get("logit_scale") or 0.0,
                                                      rel_tol=1e-4):
                raise _fail(path, f"{cfg.modality}: the weights' logit scale {scale} is not "
                            f"the manifest's {entry.get('logit_scale')}")
    model.manifest = doc
    logger.info("loaded bound model %s: %s", path, describe(doc))
    return model.eval()


def describe(doc: Mapping[str, Any]) -> str:
    """One line about a manifest, for logs: base and towers with their input specs."""
    base = doc["base"].get("name") or f"{doc['base'].get('derived_from', '?')} (retrained)"
    towers = ", ".join(
        f"{t['modality']} ({t['kind']}, {t['input'].get('shape')})" for t in doc["towers"]
    )
    return f"base {base}; bound towers: {towers or 'none'}"


__all__ = [
    "FORMAT",
    "NAMED_BASES",
    "TowerInfo",
    "WorldModelMissingError",
    "bound_tower_configs",
    "describe",
    "load_bound_model",
    "read_manifest",
    "resolve_model_dir",
    "tower_logit_scale",
]
