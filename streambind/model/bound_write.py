"""Writing a bound-model directory (the format is described in :mod:`streambind.model.bound`).

:func:`save_bound_model` writes the manifest and the weights into a directory beside the
target and moves it into place whole, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from streambind.errors import CheckpointError, ConfigError
from streambind.model.bound import (
    BASE_WEIGHTS,
    FORMAT,
    NAMED_BASES,
    VERSION,
    TowerInfo,
    tower_logit_scale,
)
from streambind.model.cache import MANIFEST_NAME, sha256_file
from streambind.model.config import MODEL_MODALITIES
from streambind.model.imagebind import ImageBind
from streambind.model.kinds import tower_config_to_dict

logger = logging.getLogger(__name__)


def _as_info(value: TowerInfo | Mapping[str, Any] | None) -> TowerInfo:
    if value is None or isinstance(value, TowerInfo):
        return value or TowerInfo()
    try:
        return TowerInfo(**value)
    except TypeError as exc:
        raise ConfigError(f"bad tower info {dict(value)!r}: {exc}") from exc


def _json(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON data (finite numbers): {exc}") from exc


def _info_doc(model: ImageBind, modality: str, info: TowerInfo) -> dict[str, Any]:
    scale = tower_logit_scale(model, modality)
    temperature = info.temperature
    if temperature is None:
        temperature = None if scale is None else 1.0 / scale
    elif scale is None or not math.isclose(temperature * scale, 1.0, rel_tol=1e-4):
        raise ConfigError(
            f"{modality}: temperature {temperature} disagrees with the tower's logit scale "
            f"{scale} (the tower's config sets it: logit_scale = 1 / temperature)"
        )
    return {
        "temperature": temperature,
        "logit_scale": scale,
        "pair_with": info.pair_with,
        "training": _json(dict(info.training), f"{modality} training"),
        "metrics": _json(dict(info.metrics), f"{modality} metrics"),
    }


def _fp32_state(module: torch.nn.Module, prefix: str = "") -> dict[str, Tensor]:
    # float32 on the CPU, compact (a view would save its whole storage).
    return {
        prefix + k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in module.state_dict().items()
    }


def _write_weights(path: Path, state: Mapping[str, Tensor]) -> str:
    torch.save(dict(state), path)
    return sha256_file(path)


def save_bound_model(
    model: ImageBind,
    out_dir: str | os.PathLike[str],
    *,
    base: str,
    info: Mapping[str, TowerInfo | Mapping[str, Any]] | None = None,
    base_weights: bool | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a bound-model directory at ``out_dir`` and return its path.

    ``base`` names what the model was built on (``--base``: a preset, ``world``, a path).
    Its towers (the six, or the subset the model has) are stored by name when ``base`` is
    one of :data:`NAMED_BASES` and ``base_weights`` is not true, else their weights are
    copied in (pass ``base_weights=True`` when the base towers were trained, as the world
    model's are). Every tower of ``model.config.extra`` is saved with its config.
    ``info`` maps a tower (bound or base) to its :class:`TowerInfo`. The directory is
    written beside ``out_dir`` and moved into place whole; an existing bound-model
    directory there is replaced, anything else there is refused. ``manifest_extra`` (JSON)
    is kept under the manifest's ``"extra"`` key (e.g. who trained it, overall metrics).
    """
    out = Path(out_dir)
    infos = {m: _as_info(v) for m, v in (info or {}).items()}
    unknown = sorted(set(infos) - set(model.modalities))
    if unknown:
        raise ConfigError(f"tower info for towers the model lacks: {', '.join(unknown)}")
    bound = [t for t in model.config.extra if t.modality in model.towers]
    base_mods = [m for m in model.modalities if m in MODEL_MODALITIES]
    if base_weights is None:
        base_weights = base not in NAMED_BASES
    if not base_weights and base not in NAMED_BASES:
        raise ConfigError(f"base {base!r} is not one of {NAMED_BASES}: its weights must be "
                          "copied in (base_weights=True)")
    if out.exists() and not (out / MANIFEST_NAME).is_file() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not a bound-model directory: not replaced")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        base_doc: dict[str, Any] = {
            "config": model.config.base_dict(), "modalities": base_mods,
        }
        if base_weights:
            state: dict[str, Tensor] = {}
            for m in base_mods:
                state.update(_fp32_state(model.towers[m], f"towers.{m}."))
            base_doc |= {"weights": BASE_WEIGHTS, "derived_from": base,
                         "sha256": _write_weights(tmp / BASE_WEIGHTS, state)}
        else:
            base_doc["name"] = base
        towers = []
        for cfg in bound:
            name = cfg.modality
            filename = f"tower.{name}.pt"
            towers.append({
                "modality": name, "kind": cfg.kind, "config": tower_config_to_dict(cfg),
                "input": cfg.input_spec(),
                **_info_doc(model, name, infos.get(name, TowerInfo())),
                "weights": filename,
                "sha256": _write_weights(tmp / filename, _fp32_state(model.towers[name])),
            })
        manifest = {
            "format": FORMAT, "version": VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "embed_dim": model.embed_dim, "base": base_doc,
            "base_towers": {m: _info_doc(model, m, i) for m, i in infos.items()
                            if m in base_mods},
            "towers": towers,
            "extra": _json(dict(manifest_extra or {}), "manifest_extra"),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved bound model to %s (base %s, towers %s)", out, base,
                ",".join(t.modality for t in bound) or "-")
    return out


__all__ = ["save_bound_model"]
