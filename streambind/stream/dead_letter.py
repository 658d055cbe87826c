"""Dead letters: records the core cannot use, written to the DLQ topic with their reason.

One writer serves the two places that reject records:

* the intake (runner thread): a record that fails decoding or validation
  (:class:`~streambind.errors.RecordError` with a reason of
  :data:`~streambind.stream.records.REASONS`);
* the embed worker (worker thread): a frame that fails to decode when a window selects it
  (``bad_frame``; the window uses the nearest good frame), and the records of a window that
  fails assembly (``assembly_failed``) or featurization (``featurize_failed``).

A dead letter carries the original key, value and headers plus the headers of the wire
contract (``error.reason``, ``error.detail``, ``source.topic``, ``source.partition``,
``source.offset``; see :func:`~streambind.stream.records.dlq_headers`). The DLQ record is
bounded: a value that would not fit in one produce request next to its headers (it can only
come from a misconfigured producer, a ``too_large`` record) is left out and its size given
in ``error.value_bytes``, so a dead letter never fails to send because of its own size.

The caller keeps the record's offset held until the returned future resolves (the intake
holds a token; the worker releases a window only after its dead letters are acknowledged),
so at least once a commit never passes a dead letter that could still be lost; exactly once
the writes go through the transactional producer inside the transaction of the commit.

A record is written once per partition state, not once per window that touched it (windows
overlap when ``hop < size``, and a failed frame can be a candidate of several windows): the
writer remembers the last :data:`REMEMBERED` records it wrote, per (topic, partition,
offset), together with the owner (the partition state) they were written for; a replay
after a rebalance or an aborted transaction builds a new partition state, so its dead
letters are written again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from kafka.future import Future

from streambind import metrics
from streambind.errors import FeatureError, RecordError
from streambind.stream.chunks import SensorChunk, SourceRecord
from streambind.stream.records import dlq_headers

logger = logging.getLogger(__name__)

BAD_FRAME = "bad_frame"
ASSEMBLY_FAILED = "assembly_failed"
FEATURIZE_FAILED = "featurize_failed"
# Dead-letter reasons of the worker (the intake's are streambind.stream.records.REASONS).
WINDOW_REASONS = (BAD_FRAME, ASSEMBLY_FAILED, FEATURIZE_FAILED)
REMEMBERED = 4096  # records remembered as written (dedup across overlapping windows)
HEADROOM_BYTES = 64 * 1024  # of a produce request, for the key, headers and framing
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024  # kafka-python's default max_request_size


def _done() -> Future:
    return Future().success(None)


class DeadLetterWriter:
    """Sends dead letters to ``topic`` through ``producer`` (thread-safe).

    ``max_request_bytes``: the producer's ``max_request_size``; a value larger than that
    minus :data:`HEADROOM_BYTES` is left out of the dead letter (see the module docstring).
    """

    def __init__(self, topic: str, producer: Any, *, max_request_bytes: int | None = None,
                 remembered: int = REMEMBERED) -> None:
        self.topic = topic
        self.producer = producer
        request = max_request_bytes or DEFAULT_MAX_REQUEST_BYTES
        self.max_value_bytes = max(request - HEADROOM_BYTES, 1024)
        self.remembered = remembered
        self.sent = 0  # dead letters handed to the producer
        self.skipped = 0  # already written for the same owner
        self._lock = threading.Lock()
        self._written: OrderedDict[tuple[str, int, int], object] = OrderedDict()

    def send(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None,
        err: RecordError, topic: str, partition: int, offset: int,
    ) -> Future:
        """Write one dead letter of the record ``topic[partition]@offset``; its future."""
        out_headers = dlq_headers(headers, err, topic, partition, offset)
        if value is not None and len(value) > self.max_value_bytes:
            out_headers.append(("error.value_bytes", str(len(value)).encode()))
            logger.info("dead letter of %s[%d]@%d: value of %d bytes left out", topic,
                        partition, offset, len(value))
            value = None
        logger.debug("dead-letter %s[%d]@%d: %s", topic, partition, offset, err)
        with self._lock:
            self.sent += 1
        return self.producer.send(self.topic, key=key, value=value, headers=out_headers)

    def send_record(self, src: SourceRecord, err: RecordError) -> Future:
        """Write a dead letter of ``src`` (a chunk's source record)."""
        return self.send(src.key, src.value, src.headers, err, src.topic, src.partition,
                         src.offset)

    def send_chunks(self, owner: object, chunks: Iterable[SensorChunk],
                    err: RecordError) -> list[Future]:
        """Write the source record of every chunk once; skip records already written for
        ``owner`` (the partition state). Returns the futures of the writes made now."""
        futures: list[Future] = []
        for src in self._fresh(owner, (c.source for c in chunks if c.source is not None)):
            futures.append(self.send_record(src, err))
        return futures

    def _fresh(self, owner: object, sources: Iterable[SourceRecord]) -> list[SourceRecord]:
        """The records of ``sources`` not yet written for ``owner`` (now marked written)."""
        out: list[SourceRecord] = []
        with self._lock:
            for src in sources:
                where = (src.topic, src.partition, src.offset)
                if self._written.get(where) is owner:
                    self.skipped += 1
                    continue
                self._written[where] = owner
                self._written.move_to_end(where)
                while len(self._written) > self.remembered:
                    self._written.popitem(last=False)
                out.append(src)
        return out


def frame_error(exc: FeatureError) -> RecordError:
    """The dead-letter error of a frame that did not decode (its decoder's code leads the
    detail: ``decode_error``, ``bad_shape``, ``non_finite``...)."""
    return RecordError(BAD_FRAME, f"{exc.reason}: {exc}")


def window_error(reason: str, exc: BaseException, where: str = "") -> RecordError:
    """The dead-letter error of a window's records (``assembly_failed``/``featurize_failed``);
    ``where`` (the window) prefixes the detail, then the error's own code when it has one."""
    code = getattr(exc, "reason", None)
    detail = f"{code}: {exc}" if isinstance(code, str) else str(exc)
    return RecordError(reason, f"{where}{detail}")


def count(modality: str, reason: str, n: int = 1) -> None:
    """Count ``n`` dead letters of ``modality`` with ``reason`` (streambind_dlq_total)."""
    if n:
        metrics.DLQ.labels(modality, reason).inc(n)


__all__ = [
    "ASSEMBLY_FAILED", "BAD_FRAME", "FEATURIZE_FAILED", "WINDOW_REASONS", "DeadLetterWriter",
    "count", "frame_error", "window_error",
]
