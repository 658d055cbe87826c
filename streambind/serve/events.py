"""Labelled events: the serving layer's ``WindowSink`` for the streaming core.

For every embedded window the sink publishes its embedding (``streambind.embeddings``,
optional) and, per label set in force, one ``streambind.events`` record with the labels
that are on (thresholds, hysteresis, top-k: ``streambind.labels``). A window whose labels
are all below threshold yields no event.

Fusion (the ``fused`` modality): when a device's window is embedded, the windows of its
other modalities that overlap it in event time (the most-overlapping one per modality,
among those already embedded) are combined with it by ImageBind's embedding arithmetic
and labelled as one more event. A fused event carries the bounds of the window that
triggered it, so its ``event_id`` is deterministic per trigger window; its content
depends on which other windows had been embedded by then, and when a window of another
modality with the same bounds triggers it again, the event is re-published under the same
id with the more complete fusion (consumers keep the latest record per key).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import torch
from kafka.future import Future

from streambind.labels import FUSED, fuse, hysteresis
from streambind.serve.label_state import LabelState
from streambind.serve.registry import LabelRegistry
from streambind.stream.config import StreamConfig
from streambind.stream.schemas import load_json
from streambind.stream.sinks import (
    EmbeddedWindow,
    all_of,
    build_event,
    encode_embeddings,
    send_event,
)

FUSION_HORIZON_NS = 30 * 1_000_000_000
"""How far back (event time) a device's embedded windows stay available for fusion."""


@dataclasses.dataclass(frozen=True)
class _Span:
    modality: str
    start_ns: int
    end_ns: int
    embedding: torch.Tensor  # (D,)


class FusionBuffer:
    """Recently embedded windows per device, to fuse each new window with its neighbours."""

    def __init__(self, horizon_ns: int = FUSION_HORIZON_NS):
        self._horizon_ns = horizon_ns
        self._spans: dict[str, deque[_Span]] = defaultdict(deque)

    def add_and_fuse(
        self, device_id: str, modality: str, start_ns: int, end_ns: int, embedding: torch.Tensor
    ) -> tuple[torch.Tensor, list[str]] | None:
        """Store the window; return (fused embedding, contributing modalities) or None."""
        recent = self._spans[device_id]
        best: dict[str, tuple[int, int, _Span]] = {}
        for other in recent:
            if other.modality == modality:
                continue
            overlap_ns = min(other.end_ns, end_ns) - max(other.start_ns, start_ns)
            if overlap_ns <= 0:
                continue
            rank = (overlap_ns, other.start_ns)
            if other.modality not in best or rank > best[other.modality][:2]:
                best[other.modality] = (*rank, other)
        recent.append(_Span(modality, start_ns, end_ns, embedding))
        newest_end_ns = max(span.end_ns for span in recent)
        while recent and recent[0].end_ns < newest_end_ns - self._horizon_ns:
            recent.popleft()
        if not best:
            return None
        partners = [best[m][2].embedding for m in sorted(best)]
        return fuse([embedding, *partners]), sorted([modality, *best])


class LabelledEventSink:
    """Scores embedded windows against the label sets in force and publishes events.

    Hysteresis state lives here (``LabelState``), per stream and label set version, with a
    short history by window end, so that the consumer can keep it in its restart state
    (``restart_state`` / ``restore_state``) and replayed windows get identical labels.
    Nothing here calls the embedder: the registry's text embeddings are prepared in advance.
    """

    def __init__(self, config: StreamConfig, registry: LabelRegistry, *, fusion: bool = True):
        self._config = config
        self._registry = registry
        self._fusion = FusionBuffer() if fusion else None
        self._state = LabelState()
        self._embeddings_header = [("schema", load_json("embeddings.v1.json")["name"].encode())]

    def publish(self, producer: Any, items: Sequence[EmbeddedWindow]) -> list[Future]:
        """Send every window's outputs; one future per window, done when all are acked."""
        futures = []
        for item in items:
            window = item.window
            sends = []
            if self._config.publish_embeddings:
                sends.append(
                    producer.send(
                        self._config.embeddings_topic,
                        key=window.device_id.encode(),
                        value=encode_embeddings([item], self._config.topic),
                        headers=self._embeddings_header,
                    )
                )
            for event in self.events(item):
                sends.append(send_event(producer, self._config.events_topic, event))
            futures.append(all_of(sends))
        return futures

    def events(self, item: EmbeddedWindow) -> list[dict[str, Any]]:
        """The event objects of one embedded window (its own and the fused one)."""
        window = item.window
        embedding = torch.as_tensor(item.embedding, dtype=torch.float32)
        events = self._label(item, window.modality, embedding)
        if self._fusion is not None:
            fused = self._fusion.add_and_fuse(
                window.device_id, window.modality, window.start_ns, window.end_ns, embedding
            )
            if fused is not None:
                fused_embedding, modalities = fused
                for event in self._label(item, FUSED, fused_embedding):
                    event["fused_from"] = modalities
                    events.append(event)
        return events

    def restart_state(self, device_id: str, modality: str, through_end_ns: int) -> dict | None:
        """Hysteresis state of one stream right after its last published window with end
        <= ``through_end_ns`` (JSON-serializable), None when there is none (restart state)."""
        return self._state.snapshot(device_id, modality, through_end_ns)

    def restore_state(self, device_id: str, modality: str, state: dict) -> None:
        """Continue one stream from a ``restart_state`` document (before its next window)."""
        self._state.restore(device_id, modality, state)

    def _label(
        self, item: EmbeddedWindow, modality: str, embedding: torch.Tensor
    ) -> list[dict[str, Any]]:
        window = item.window
        if modality != window.modality:
            window = dataclasses.replace(window, key=window.key._replace(modality=modality))
        events = []
        after: dict[str, tuple[int, frozenset[str]]] = {}
        for label_set, scored in self._registry.score(modality, embedding):
            was_on = self._state.on_before(
                window.device_id, modality, label_set.name, label_set.version
            )
            on = hysteresis(scored, was_on, label_set.hysteresis)
            after[label_set.name] = (label_set.version, frozenset(name for name, _ in on))
            on = on[: label_set.top_k]
            if not on:
                continue
            labels = [{"label": name, "score": round(score, 6)} for name, score in on]
            events.append(
                build_event(
                    window,
                    item.model,
                    label_set=label_set.name,
                    label_set_version=label_set.version,
                    labels=labels,
                )
            )
        self._state.record(window.device_id, modality, window.end_ns, after)
        return events
