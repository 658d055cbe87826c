"""Deterministic event ids: the same window, label set version and model give the same id."""

from __future__ import annotations

import hashlib
import json


def event_id(
    device_id: str,
    modality: str,
    window_start_ns: int,
    window_end_ns: int,
    label_set: str,
    label_set_version: int,
    model: str,
) -> str:
    """sha256 (64 hex digits) over the window's identity, label set version and model.

    The fields are hashed as a compact JSON array, so no two different inputs collide by
    concatenation. A replay after a crash reproduces the id; consumers drop duplicates by key.
    """
    payload = json.dumps(
        [device_id, modality, int(window_start_ns), int(window_end_ns), label_set,
         int(label_set_version), model],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def window_id(device_id: str, modality: str, start_ns: int, end_ns: int, model: str) -> str:
    """sha256 (64 hex digits) over a window's device, modality, bounds and model.

    The key of a memory (one stored embedded window): the same window embedded by the same
    model always gets the same id, so replays upsert instead of duplicating. The fields are
    hashed as a compact JSON array (``["window", device, modality, start, end, model]``);
    the leading tag keeps it apart from :func:`event_id` over similar fields.
    """
    payload = json.dumps(
        ["window", device_id, modality, int(start_ns), int(end_ns), model],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
