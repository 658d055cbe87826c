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

from streambind.stream.config import StreamConfig
from streambind.stream.ids import event_id
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


def encode_embeddings(items: Sequence[EmbeddedWindow]) -> bytes:
    """An Arrow IPC stream of ``streambind.embeddings`` rows for ``items`` (same width D)."""
    dim = int(items[0].embedding.shape[-1])
    schema = embeddings_schema(dim)
    flat = np.concatenate([np.asarray(i.embedding, dtype=np.float32).reshape(dim) for i in items])
    columns = [
        pa.array([i.window.device_id for i in items], pa.string()),
        pa.array([i.window.modality for i in items], pa.string()),
        pa.array([i.window.start_ns for i in items], pa.int64()),
        pa.array([i.window.end_ns for i in items], pa.int64()),
        pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
        pa.array([i.model for i in items], pa.string()),
    ]
    return encode_batch(pa.RecordBatch.from_arrays(columns, schema=schema))


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
                    value=encode_embeddings([item]), headers=self._emb_header))
            event = build_event(w, item.model)
            sends.append(producer.send(
                self.config.events_topic, key=event["event_id"].encode(),
                value=encode_event(event)))
            out.append(all_of(sends))
        return out
