"""Publishing of embedded windows: the :class:`WindowSink` protocol and the default sink.

The runner gives a sink the embedded windows of a batch and the shared ``KafkaProducer``;
the sink sends the outputs and returns one future per window that resolves once *all* of
that window's outputs are acknowledged (:func:`all_of` combines send futures). Only then
does the runner release the window's offsets for commit. The serving layer plugs in a sink
that scores labels and publishes labelled events; :class:`EmbeddingSink` publishes raw
embeddings and a minimal event without labels.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from kafka.future import Future

from streambind import metrics
from streambind.memories.preview import FRAME_MODALITIES, middle_frame, thumbnail_jpeg
from streambind.stream.config import StreamConfig
from streambind.stream.ids import event_id, window_id
from streambind.stream.records import encode_batch
from streambind.stream.schemas import embeddings_schema, load_json
from streambind.stream.windows import ClosedWindow


@dataclass(frozen=True, slots=True)
class EmbeddedWindow:
    """A closed window with its embedding (D,) and the model that produced it."""

    window: ClosedWindow
    embedding: np.ndarray
    model: str


class WindowSink(Protocol):
    """Publishes the outputs of embedded windows."""

    def publish(self, producer: Any, items: Sequence[EmbeddedWindow]) -> list[Future]:
        """Send every item's outputs; one future per item, done when all are acknowledged."""
        ...


def all_of(futures: Iterable[Future]) -> Future:
    """A future that succeeds when every one of ``futures`` succeeds, fails on the first error."""
    futures = list(futures)
    combined = Future()
    if not futures:
        return combined.success(None)
    remaining = [len(futures)]
    lock = threading.Lock()

    def _ok(_value: object) -> None:
        with lock:
            remaining[0] -= 1
            done = remaining[0] == 0 and not combined.is_done
        if done:
            combined.success(None)

    def _err(exc: BaseException) -> None:
        with lock:
            first = not combined.is_done
            if first:
                remaining[0] = -1
        if first:
            combined.failure(exc)

    for fut in futures:
        fut.add_callback(_ok)
        fut.add_errback(_err)
    return combined


def build_event(
    window: ClosedWindow,
    model: str,
    *,
    label_set: str = "",
    label_set_version: int = 0,
    labels: Sequence[dict[str, Any]] = (),
    emitted_at_ns: int | None = None,
) -> dict[str, Any]:
    """The ``streambind.events`` JSON object of a window (see ``schemas/event.schema.json``)."""
    return {
        "event_id": event_id(window.device_id, window.modality, window.start_ns, window.end_ns,
                             label_set, label_set_version, model),
        "device_id": window.device_id,
        "modality": window.modality,
        "window_start_ns": window.start_ns,
        "window_end_ns": window.end_ns,
        "label_set": label_set,
        "label_set_version": label_set_version,
        "labels": list(labels),
        "model": model,
        "emitted_at_ns": time.time_ns() if emitted_at_ns is None else emitted_at_ns,
        "coverage": round(float(window.coverage), 6),
        "gap_filled": bool(window.gap_filled),
    }


def encode_event(event: dict[str, Any]) -> bytes:
    """UTF-8 JSON of an event."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def send_event(producer: Any, topic: str, event: dict[str, Any]) -> Future:
    """Send one event (key = its id); the one place events and their labels are counted,
    once the broker acknowledged the record (``streambind_events_total``,
    ``streambind_labels_total``), so the counters match what reached the topic."""
    future = producer.send(topic, key=event["event_id"].encode(), value=encode_event(event))
    future.add_callback(_count_event, event["modality"], event["label_set"],
                        [label["label"] for label in event["labels"]])
    return future


def _count_event(modality: str, label_set: str, labels: list[str], _metadata: object) -> None:
    metrics.EVENTS.labels(modality).inc()
    for label in labels:
        metrics.LABELS.labels(label_set, label).inc()


def encode_embeddings(items: Sequence[EmbeddedWindow], topic_of: Any = None) -> bytes:
    """An Arrow IPC stream of ``streambind.embeddings`` rows for ``items`` (same width D).

    Besides the embedding, each row carries its ``window_id`` (the memories key), a reference
    to its source records and, for frame modalities, a small JPEG preview. ``topic_of`` maps
    a modality to its sensor topic (``StreamConfig.topic``); default ``sensors.<modality>``.
    """
    dim = int(items[0].embedding.shape[-1])
    schema = embeddings_schema(dim)
    flat = np.concatenate([np.asarray(i.embedding, dtype=np.float32).reshape(dim) for i in items])
    windows = [i.window for i in items]
    topic = topic_of or (lambda modality: f"sensors.{modality}")
    offsets = [[c.offset for c in w.chunks] for w in windows]
    columns = [
        pa.array([w.device_id for w in windows], pa.string()),
        pa.array([w.modality for w in windows], pa.string()),
        pa.array([w.start_ns for w in windows], pa.int64()),
        pa.array([w.end_ns for w in windows], pa.int64()),
        pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
        pa.array([i.model for i in items], pa.string()),
        pa.array([window_id(w.device_id, w.modality, w.start_ns, w.end_ns, i.model)
                  for w, i in zip(windows, items, strict=True)], pa.string()),
        pa.array([topic(w.modality) for w in windows], pa.string()),
        pa.array([w.partition for w in windows], pa.int32()),
        pa.array([min(o) if o else None for o in offsets], pa.int64()),
        pa.array([max(o) if o else None for o in offsets], pa.int64()),
        pa.array([_preview(w) for w in windows], pa.binary()),
    ]
    return encode_batch(pa.RecordBatch.from_arrays(columns, schema=schema))


def _preview(window: ClosedWindow) -> bytes | None:
    if window.modality not in FRAME_MODALITIES:
        return None
    return thumbnail_jpeg(middle_frame(window.chunks, window.start_ns, window.end_ns))


class EmbeddingSink:
    """Default sink: one ``streambind.embeddings`` record and one label-less event per window."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._emb_header = [("schema", load_json("embeddings.v1.json")["name"].encode())]

    def publish(self, producer: Any, items: Sequence[EmbeddedWindow]) -> list[Future]:
        """Send the embedding and the event of every item; one combined future per item."""
        out = []
        for item in items:
            sends = []
            w = item.window
            if self.config.publish_embeddings:
                sends.append(producer.send(
                    self.config.embeddings_topic, key=w.device_id.encode(),
                    value=encode_embeddings([item], self.config.topic), headers=self._emb_header))
            event = build_event(w, item.model)
            sends.append(send_event(producer, self.config.events_topic, event))
            out.append(all_of(sends))
        return out
