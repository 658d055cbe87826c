"""The official checkpoint's key layout and strict loading of state dicts in it.

The official ``imagebind_huge.pth`` (Meta, CC BY-NC-SA 4.0) is a plain state dict whose keys
follow the reference module tree (``modality_preprocessors.vision.rgbt_stem.proj.1.weight``
...). :func:`official_key_to_ours` renames one key to streambind's tree
(``towers.vision.stem.proj.weight``); it is a bijection, :func:`ours_key_to_official` is
its inverse. This module needs no model class at run time (only its ``state_dict``,
``towers`` and ``modalities``), so the model can use it without an import circle.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from streambind.errors import CheckpointError
from streambind.model.config import MODEL_MODALITIES

if TYPE_CHECKING:
    from streambind.model.imagebind import ImageBind

_BLOCK_SUFFIXES = {
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj.weight": "attn.out.weight",
    "attn.out_proj.bias": "attn.out.bias",
    "attn.bias_k": "attn.bias_k",
    "attn.bias_v": "attn.bias_v",
    "norm_1.weight": "norm1.weight",
    "norm_1.bias": "norm1.bias",
    "norm_2.weight": "norm2.weight",
    "norm_2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_BLOCK_SUFFIXES_INV = {v: k for k, v in _BLOCK_SUFFIXES.items()}
_MODALITY_RE = "|".join(MODEL_MODALITIES)
_OFFICIAL_BLOCK = re.compile(rf"modality_trunks\.({_MODALITY_RE})\.blocks\.(\d+)\.(.+)")
_OURS_BLOCK = re.compile(rf"towers\.({_MODALITY_RE})\.trunk\.blocks\.(\d+)\.(.+)")


@functools.cache
def _fixed_keys() -> dict[str, str]:
    """Official -> ours for every key outside the transformer blocks."""
    table: dict[str, str] = {}
    for m in MODEL_MODALITIES:
        pre, ours = f"modality_preprocessors.{m}.", f"towers.{m}."
        if m == "text":
            table[pre + "token_embedding.weight"] = ours + "stem.token_embedding.weight"
            table[pre + "pos_embed"] = ours + "stem.pos_embed"
            table[pre + "mask"] = ours + "stem.causal_mask"
            head_norm, head_proj = "modality_heads.text.proj.0", "modality_heads.text.proj.1"
        else:
            stem = {"vision": "rgbt_stem.proj.1", "depth": "depth_stem.proj",
                    "imu": "imu_stem.proj"}.get(m, "rgbt_stem.proj")
            table[f"{pre}{stem}.weight"] = ours + "stem.proj.weight"
            if m != "vision":  # the vision stem has no LayerNorm
                norm = stem.rsplit(".", 1)[0] + ".norm_layer"
                for p in ("weight", "bias"):
                    table[f"{pre}{norm}.{p}"] = f"{ours}stem.norm.{p}"
            table[pre + "cls_token"] = ours + "stem.cls_token"
            pos = "pos_embed" if m == "imu" else "pos_embedding_helper.pos_embed"
            table[pre + pos] = ours + "stem.pos_embed"
            # The IMU head has a Dropout at index 2, shifting its projection to index 3.
            proj_index = 3 if m == "imu" else 2
            head_norm, head_proj = f"modality_heads.{m}.0", f"modality_heads.{m}.{proj_index}"
        for p in ("weight", "bias"):
            table[f"{head_norm}.{p}"] = f"{ours}head.norm.{p}"
        table[f"{head_proj}.weight"] = ours + "head.proj.weight"
        if m == "vision":
            for p in ("weight", "bias"):
                table[f"modality_trunks.vision.pre_transformer_layer.0.{p}"] = (
                    f"{ours}trunk.pre_norm.{p}"
                )
        else:  # vision embeddings are only normalized; the others carry a logit scale
            table[f"modality_postprocessors.{m}.1.log_logit_scale"] = ours + "head.log_logit_scale"
    return table


@functools.cache
def _fixed_keys_inv() -> dict[str, str]:
    return {v: k for k, v in _fixed_keys().items()}


def official_key_to_ours(key: str) -> str:
    """Rename one official ImageBind state-dict key to streambind's module tree.

    Raises ``KeyError`` for a key that is not part of the official layout.
    """
    if key in _fixed_keys():
        return _fixed_keys()[key]
    match = _OFFICIAL_BLOCK.fullmatch(key)
    if match and match[3] in _BLOCK_SUFFIXES:
        return f"towers.{match[1]}.trunk.blocks.{match[2]}.{_BLOCK_SUFFIXES[match[3]]}"
    raise KeyError(key)


def ours_key_to_official(key: str) -> str:
    """Inverse of :func:`official_key_to_ours`."""
    if key in _fixed_keys_inv():
        return _fixed_keys_inv()[key]
    match = _OURS_BLOCK.fullmatch(key)
    if match and match[3] in _BLOCK_SUFFIXES_INV:
        return f"modality_trunks.{match[1]}.blocks.{match[2]}.{_BLOCK_SUFFIXES_INV[match[3]]}"
    raise KeyError(key)


def _tower_of(our_key: str) -> str:
    return our_key.split(".", 2)[1]


def _listing(title: str, keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    if len(keys) > limit:
        shown += f", ... ({len(keys) - limit} more)"
    return f"{len(keys)} {title}: {shown}"


def load_official_state_dict(model: ImageBind, state_dict: Mapping[str, Any]) -> None:
    """Load an official-layout state dict into ``model``, strictly, for the towers it has.

    Keys of towers the model was built without are ignored; every other key must map to a
    parameter or buffer of the same shape, and every parameter and buffer must be covered.
    Works on a model built on the meta device (the tensors are then adopted, not copied).
    """
    expected = model.state_dict()
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    mismatched_ours: set[str] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            unexpected.append(repr(key))
            continue
        try:
            ours = key if key.startswith("towers.") else official_key_to_ours(key)
        except KeyError:
            unexpected.append(key)
            continue
        if _tower_of(ours) not in model.towers:
            continue  # a tower this model was built without
        if ours not in expected:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[ours].shape):
            mismatched.append(
                f"{key} {tuple(value.shape)} != expected {tuple(expected[ours].shape)}"
            )
            mismatched_ours.add(ours)
        else:
            converted[ours] = value
    missing = [
        _official_name(k) for k in expected if k not in converted and k not in mismatched_ours
    ]
    if missing or unexpected or mismatched:
        parts = [
            _listing(title, keys)
            for title, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("keys with mismatched shapes", mismatched),
            )
            if keys
        ]
        towers = ", ".join(model.modalities)
        raise CheckpointError(
            f"checkpoint does not match the model (towers: {towers}): " + "; ".join(parts)
        )
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(converted, strict=True, assign=on_meta)


def _official_name(our_key: str) -> str:
    try:
        return ours_key_to_official(our_key)
    except KeyError:
        return our_key
