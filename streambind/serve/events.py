"""From window embeddings to ``streambind.events`` records: labels, fusion, event ids.

Fusion (the ``fused`` modality): when a device's window is embedded, the windows of its
other modalities that overlap it in event time (the most-overlapping one per modality,
among those already embedded) are combined with it by ImageBind's embedding arithmetic
(normalized sum of normalized embeddings) and labelled as one more event. A fused event
carries the bounds of the window that triggered it, so its ``event_id`` is deterministic
per trigger window; its content depends on which other windows had been embedded by then,
and when a later window of another modality re-triggers the same bounds, the event is
re-published under the same id with the more complete fusion (consumers keep the latest).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streambind import metrics
from streambind.labels import FUSED, LabelRegistry, fuse

FUSION_HORIZON_NS = 30 * 1_000_000_000
"""How far back (event time) a device's embedded windows stay available for fusion."""


@dataclass(frozen=True)
class EmbeddedWindow:
    """One window's place in time and its embedding."""

    device_id: str
    modality: str
    start_ns: int
    end_ns: int
    embedding: torch.Tensor  # (D,)


class FusionBuffer:
    """Recently embedded windows per device, to fuse each new window with its neighbours."""

    def __init__(self, horizon_ns: int = FUSION_HORIZON_NS):
        self._horizon_ns = horizon_ns
        self._windows: dict[str, deque[EmbeddedWindow]] = defaultdict(deque)

    def add_and_fuse(self, window: EmbeddedWindow) -> tuple[torch.Tensor, list[str]] | None:
        """Store ``window``; return (fused embedding, contributing modalities) or None."""
        recent = self._windows[window.device_id]
        best: dict[str, tuple[int, int, EmbeddedWindow]] = {}
        for other in recent:
            if other.modality == window.modality:
                continue
            overlap_ns = min(other.end_ns, window.end_ns) - max(other.start_ns, window.start_ns)
            if overlap_ns <= 0:
                continue
            rank = (overlap_ns, other.start_ns)
            if other.modality not in best or rank > best[other.modality][:2]:
                best[other.modality] = (*rank, other)
        recent.append(window)
        newest_end_ns = max(w.end_ns for w in recent)
        while recent and recent[0].end_ns < newest_end_ns - self._horizon_ns:
            recent.popleft()
        if not best:
            return None
        partners = [best[modality][2] for modality in sorted(best)]
        fused = fuse([window.embedding, *(p.embedding for p in partners)])
        return fused, sorted([window.modality, *best])


def event_id(
    device_id: str,
    modality: str,
    window_start_ns: int,
    window_end_ns: int,
    label_set: str,
    label_set_version: int,
    model: str,
) -> str:
    """Deterministic id (delegates to the streaming core's definition)."""
    from streambind.stream.ids import event_id as core_event_id

    return core_event_id(
        device_id, modality, window_start_ns, window_end_ns, label_set, label_set_version, model
    )


class EventBuilder:
    """Labels embedded windows against the registry and renders event records."""

    def __init__(
        self,
        registry: LabelRegistry,
        model: str,
        *,
        fusion: bool = True,
        clock_ns: Callable[[], int] = time.time_ns,
    ):
        self._registry = registry
        self._model = model
        self._fusion = FusionBuffer() if fusion else None
        self._clock_ns = clock_ns

    def events(self, window: EmbeddedWindow) -> list[tuple[str, bytes]]:
        """(key, JSON value) records for one embedded window, its fused event included."""
        records = self._label(window.device_id, window.modality, window, window.embedding)
        if self._fusion is not None:
            fused = self._fusion.add_and_fuse(window)
            if fused is not None:
                embedding, modalities = fused
                records += self._label(window.device_id, FUSED, window, embedding, modalities)
        return records

    def _label(
        self,
        device_id: str,
        modality: str,
        window: EmbeddedWindow,
        embedding: torch.Tensor,
        fused_from: list[str] | None = None,
    ) -> list[tuple[str, bytes]]:
        records = []
        for label_set, on in self._registry.label(device_id, modality, embedding):
            if not on:
                continue
            identifier = event_id(
                device_id,
                modality,
                window.start_ns,
                window.end_ns,
                label_set.name,
                label_set.version,
                self._model,
            )
            event = {
                "event_id": identifier,
                "device_id": device_id,
                "modality": modality,
                "window_start_ns": window.start_ns,
                "window_end_ns": window.end_ns,
                "label_set": label_set.name,
                "label_set_version": label_set.version,
                "labels": [{"label": name, "score": round(score, 6)} for name, score in on],
                "model": self._model,
                "emitted_at_ns": self._clock_ns(),
            }
            if fused_from is not None:
                event["fused_from"] = fused_from
            for name, _score in on:
                metrics.LABELS.labels(label_set.name, name).inc()
            records.append((identifier, json.dumps(event, separators=(",", ":")).encode()))
        return records
