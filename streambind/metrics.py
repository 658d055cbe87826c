"""Prometheus metrics. Every metric streambind exports is defined here, once.

Each metric has one meaning and is updated in one place, in one kind of process: the
ingest replicas (consumer, windows, embed requests, published events) or the embedder
replicas (forward passes). Names follow Prometheus conventions: counters end in
``_total``, durations are in seconds and end in ``_seconds``. The Grafana dashboard
(deploy/grafana) is checked against this module by a test, so rename with care.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_EMBED_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

RECORDS = Counter(
    "streambind_records_total",
    "Sensor records consumed, by modality and outcome (accepted, dlq, late).",
    ["modality", "outcome"],
)
DLQ = Counter(
    "streambind_dlq_total",
    "Records sent to the dead-letter topic, by modality and reason code.",
    ["modality", "reason"],
)
WINDOWS = Counter(
    "streambind_windows_total",
    "Windows by modality and outcome (emitted, low_coverage, gap_filled, failed).",
    ["modality", "outcome"],
)
OVER_BUDGET_CHUNKS = Counter(
    "streambind_window_chunks_over_budget_total",
    "Chunks a closed window did not keep because it already held max_window_bytes (audio "
    "and imu: their time counts as not covered; frames: fallback candidates).",
    ["modality"],
)
WINDOWS_CLOSED_AT_BOUND = Counter(
    "streambind_windows_closed_at_bound_total",
    "Windows the idle timeout closed while the byte bound paused the consumer for open "
    "windows: their records still unread will be late (max_buffered_bytes is too small for "
    "the active devices).",
    ["modality"],
)
CONSUMER_LAG = Gauge(
    "streambind_consumer_lag_records",
    "Records between the consumer position and the end of the partition.",
    ["topic", "partition"],
)
PAUSED_PARTITIONS = Gauge(
    "streambind_paused_partitions",
    "Partitions paused for backpressure (the embedder is slower than the input).",
)
BUFFERED_WINDOWS = Gauge(
    "streambind_buffered_windows",
    "Closed windows waiting for the embedder.",
)
OPEN_WINDOW_BYTES = Gauge(
    "streambind_open_window_bytes",
    "Payload bytes held in open windows, over the partitions assigned here (a chunk in two "
    "overlapping windows counts twice); with the queued bytes, bounded by max_buffered_bytes.",
)
QUEUED_WINDOW_BYTES = Gauge(
    "streambind_queued_window_bytes",
    "Payload bytes of closed windows queued to the embedder and not yet acknowledged.",
)
TRACKED_DEVICES = Gauge("streambind_tracked_devices", "Devices with event-time state here.")
BATCH_SIZE = Histogram(
    "streambind_batch_size",
    "Embedder process: inputs (windows, or prompts for text) per forward pass, by tower.",
    ["modality"],
    buckets=_BATCH_BUCKETS,
)
EMBED_SECONDS = Histogram(
    "streambind_embed_seconds",
    "Embedder process: seconds per forward pass (one merged batch), by tower.",
    ["modality"],
    buckets=_EMBED_BUCKETS_S,
)
EMBED_REQUEST_WINDOWS = Histogram(
    "streambind_embed_request_windows",
    "Ingest process: windows per embed request the worker sends, by modality.",
    ["modality"],
    buckets=_BATCH_BUCKETS,
)
EMBED_REQUEST_SECONDS = Histogram(
    "streambind_embed_request_seconds",
    "Ingest process: seconds from sending an embed request to its embeddings (queueing, "
    "batching, forward pass and retries included), by modality.",
    ["modality"],
    buckets=_LATENCY_BUCKETS_S,
)
LATENCY_SECONDS = Histogram(
    "streambind_end_to_end_latency_seconds",
    "Seconds from window end (event time) until all the window's outputs were acknowledged "
    "by the broker, once per window, by modality.",
    ["modality"],
    buckets=_LATENCY_BUCKETS_S,
)
EVENTS = Counter(
    "streambind_events_total",
    "Events acknowledged by the broker on the events topic, by event modality (fused too).",
    ["modality"],
)
LABELS = Counter(
    "streambind_labels_total",
    "Labels on events acknowledged by the broker, by label set and label.",
    ["label_set", "label"],
)

LABEL_RECORDS = Counter(
    "streambind_label_records_total",
    "Records read from the labels topic, by outcome (applied: accepted as the newest "
    "version, in force once its text embeddings exist; stale, removed, rejected; failed: "
    "accepted but its text embeddings could not be computed).",
    ["outcome"],
)
LABEL_SETS_PENDING = Gauge(
    "streambind_label_sets_pending",
    "Label set versions accepted whose text embeddings are still being computed (the "
    "previous version stays in force meanwhile).",
)

# Memories (``streambind remember`` and the search API's processes).
MEMORIES_FRESHNESS_SECONDS = Histogram(
    "streambind_memories_freshness_seconds",
    "Window end (event time) to the store commit that makes the window searchable.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
MEMORIES_ROWS = Counter("streambind_memories_rows_total",
                        "Rows upserted into the memories store, by kind (window, labels).",
                        ["kind"])
MEMORIES_REJECTED = Counter("streambind_memories_rejected_total",
                            "Input records remember could not decode, by DLQ reason.", ["reason"])
MEMORIES_SEARCH_SECONDS = Histogram(
    "streambind_memories_search_seconds",
    "Memories store queries, by plan (exact: flat scan; indexed: vector index).",
    ["plan"], buckets=_EMBED_BUCKETS_S,
)


def exported_metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every sample name streambind's metrics export (``_total``, ``_bucket``... included)."""
    names: set[str] = set()
    for metric in registry.collect():
        if not metric.name.startswith("streambind_"):
            continue
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
    names.update(_suffixed_names())
    return names


def _suffixed_names() -> set[str]:
    # Labelled metrics without samples yet still export these names once observed.
    names: set[str] = set()
    for metric in (RECORDS, DLQ, WINDOWS, EVENTS, LABELS, LABEL_RECORDS, OVER_BUDGET_CHUNKS,
                   WINDOWS_CLOSED_AT_BOUND, MEMORIES_ROWS, MEMORIES_REJECTED):
        names.add(metric._name + "_total")
    for metric in (BATCH_SIZE, EMBED_SECONDS, EMBED_REQUEST_WINDOWS, EMBED_REQUEST_SECONDS,
                   LATENCY_SECONDS, MEMORIES_FRESHNESS_SECONDS, MEMORIES_SEARCH_SECONDS):
        names.update(metric._name + suffix for suffix in ("_bucket", "_count", "_sum"))
    for metric in (CONSUMER_LAG, PAUSED_PARTITIONS, BUFFERED_WINDOWS, LABEL_SETS_PENDING,
                   OPEN_WINDOW_BYTES, QUEUED_WINDOW_BYTES):
        names.add(metric._name)
    return names


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> int:
    """Serve /metrics on ``addr:port`` in a daemon thread; returns the bound port."""
    server, _thread = _start_http_server(port, addr=addr)
    bound_port = server.server_address[1]
    logger.info("metrics at http://%s:%d/metrics", addr, bound_port)
    return bound_port
