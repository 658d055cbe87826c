"""Restart state per device: what a restarted consumer needs to rebuild exactly the windows
that were open at the committed offset, and no partial copies of windows already emitted.

The document that goes with a partition's commit (format ``v`` 2)::

    {"v": 2, "dev": {"<device>": {"wm": 17..., "thr": 17..., "re": [17...], "st": 17...,
                                   "sink": {...}}}}

per device: ``wm`` its watermark floor, ``thr`` the end through which its windows were
closed, ``re`` the starts of the windows among those not released yet (rebuilt by the
replay), ``st`` the end through which ``sink`` (the sink's state for the device, e.g.
hysteresis; see ``WindowSink.restart_state``) is (omitted when equal to ``thr``). Devices
forgotten after ``device_ttl_s`` are absent.

Kafka keeps the document as commit metadata when it fits in ``max_commit_metadata_bytes``;
otherwise (and for brokers that drop commit metadata: the embedded Tansu broker does) it
goes to the compacted side topic ``streambind.state``, written and acknowledged *before*
the offsets are committed, so the state is never older than the committed offset; the
metadata then says ``{"v": 2, "side": 1}``. With exactly-once delivery the state is written
in the commit's transaction and only a document for exactly the committed offset is used: a
later one belongs to an aborted transaction (which a broker that hides aborted records never
shows, and Tansu does). :func:`ensure_state_topic` creates the side topic at start.
The old per-partition form ``{"wm": ..., "dev": {"<device>": floor}}`` is still read.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streambind.errors import StreambindError
from streambind.stream.window_types import DeviceRestart

logger = logging.getLogger(__name__)

# Documents kept per key when reading the side topic: the committed one is among the last
# few (at most one aborted transaction per commit interval follows it).
STATE_HISTORY = 16
DOC_VERSION = 2
SIDE = {"v": DOC_VERSION, "side": 1}  # commit metadata when the document is on the side topic


class StateTopicError(StreambindError):
    """The restart-state topic is missing and could not be created (or is not compacted)."""


def ensure_state_topic(config: Any, timeout_s: float = 30.0) -> bool:
    """Make sure ``config.state_topic`` exists, creating it compacted when missing.

    Returns True when it was created here. Raises :class:`StateTopicError` when it is
    missing and cannot be created (no permission, broker refuses): at start, with a clear
    message, rather than failing every commit later. A ``None`` state topic is a no-op.
    """
    topic = config.state_topic
    if not topic:
        return False
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=config.bootstrap, client_id=config.client_id,
                                 request_timeout_ms=round(timeout_s * 1000),
                                 bootstrap_timeout_ms=round(timeout_s * 1000),
                                 **config.security_kwargs())
    except KafkaError as exc:
        raise StateTopicError(f"cannot reach the broker to check {topic!r}: {exc}") from exc
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                      topic_configs={"cleanup.policy": "compact"})])
        logger.info("created the restart-state topic %s (compacted)", topic)
        return True
    except TopicAlreadyExistsError:
        return False  # another replica was first
    except KafkaError as exc:
        raise StateTopicError(
            f"restart-state topic {topic!r} is missing and could not be created ({exc}); "
            f"create it compacted (cleanup.policy=compact) or set state_topic=None to keep "
            f"restart state in commit metadata only") from exc
    finally:
        admin.close()


def encode_doc(states: dict[str, DeviceRestart]) -> dict[str, Any]:
    """The restart document of one partition from its devices' states."""
    dev: dict[str, dict[str, Any]] = {}
    for device_id, st in sorted(states.items()):
        entry: dict[str, Any] = {"wm": st.watermark_ns, "thr": st.through_ns}
        if st.reopen_starts:
            entry["re"] = list(st.reopen_starts)
        if st.sink_through_ns is not None and st.sink_through_ns != st.through_ns:
            entry["st"] = st.sink_through_ns
        if st.sink is not None:
            entry["sink"] = st.sink
        dev[device_id] = entry
    return {"v": DOC_VERSION, "dev": dev}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def decode_doc(doc: dict[str, Any]) -> tuple[dict[str, DeviceRestart], int | None]:
    """Per-device states and (old per-partition form only) a watermark for the others.

    An unreadable device entry is skipped with a warning (at-least-once still holds).
    """
    states: dict[str, DeviceRestart] = {}
    dev = doc.get("dev") or {}
    if not isinstance(dev, dict):
        logger.warning("ignoring unreadable restart state")
        return {}, None
    if doc.get("v") != DOC_VERSION:  # the old form: {"wm": int, "dev": {device: floor}}
        try:
            wm = _int(doc.get("wm"))
            for device_id, floor in dev.items():
                states[str(device_id)] = DeviceRestart(watermark_ns=wm, through_ns=int(floor))
        except (TypeError, ValueError):
            logger.warning("ignoring unreadable restart state")
            return {}, None
        return states, wm
    for device_id, entry in dev.items():
        try:
            sink = entry.get("sink")
            states[str(device_id)] = DeviceRestart(
                watermark_ns=_int(entry.get("wm")), through_ns=_int(entry.get("thr")),
                reopen_starts=tuple(int(s) for s in entry.get("re", ())),
                sink_through_ns=_int(entry.get("st", entry.get("thr"))),
                sink=sink if isinstance(sink, dict) else None)
        except (AttributeError, TypeError, ValueError):
            logger.warning("ignoring unreadable restart state of device %r", device_id)
    return states, None


def state_key(group_id: str, tp: TopicPartition) -> bytes:
    """The side-topic key of one partition's state for one consumer group."""
    return f"{group_id}|{tp.topic}|{tp.partition}".encode()


def parse_state(text: str | bytes | None) -> dict[str, Any]:
    """Parse a state document; an unreadable one is ignored (at-least-once still holds)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        logger.warning("ignoring unreadable restart state")
        return {}
    return doc if isinstance(doc, dict) else {}


def load_side_topic(
    consumer_kwargs: dict[str, Any], topic: str, group_id: str, idle_s: float = 0.3,
    timeout_s: float = 30.0,
) -> dict[bytes, list[dict[str, Any]]]:
    """Read the state topic to its end; per key of ``group_id``, its last documents (oldest
    first, at most ``STATE_HISTORY``)."""
    kwargs = {k: v for k, v in consumer_kwargs.items()
              if k not in ("group_id", "enable_auto_commit", "max_poll_records",
                           "session_timeout_ms", "heartbeat_interval_ms", "auto_offset_reset")}
    consumer = KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **kwargs)
    out: dict[bytes, deque[dict[str, Any]]] = {}
    prefix = f"{group_id}|".encode()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        # Read up to the end offsets of now (one request): an empty topic costs nothing
        # more, and the end is known without waiting for a fetch response's high water.
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= ends.get(tp, 0) for tp in tps):
                break
            batches = consumer.poll(timeout_ms=100)
            for messages in batches.values():
                for msg in messages:
                    if msg.key and msg.key.startswith(prefix):
                        history = out.setdefault(msg.key, deque(maxlen=STATE_HISTORY))
                        history.append(parse_state(msg.value))
                last_new = time.monotonic()
            if time.monotonic() - last_new > idle_s * 10:
                break  # aborted transactions at the end leave the position short of it
    finally:
        consumer.close()
    return {key: list(docs) for key, docs in out.items()}


def pick_state(
    docs: Sequence[dict[str, Any]], committed_offset: int | None, exact: bool
) -> dict[str, Any]:
    """The side-topic document that goes with ``committed_offset``, or ``{}``.

    At least once: the latest document, unless it is older than the commit (a newer one is
    safe: it was written just before a commit that did not happen). Exactly once
    (``exact``): the latest document for exactly the committed offset.
    """
    def offset_of(doc: dict[str, Any]) -> int:
        try:
            return int(doc.get("offset", -1))
        except (TypeError, ValueError):
            return -1

    if exact:
        matching = [d for d in docs if offset_of(d) == committed_offset]
        return matching[-1] if matching else {}
    if not docs:
        return {}
    latest = docs[-1]
    if committed_offset is not None and offset_of(latest) < committed_offset:
        return {}  # older than the commit: not the state that went with it
    return latest
