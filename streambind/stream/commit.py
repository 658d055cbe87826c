"""Offset commits with restart state, at least once or exactly once.

What a partition may commit comes from its :class:`~streambind.stream.offsets.OffsetTracker`:
never past the first record of a window whose outputs are not yet acknowledged. With each
offset goes the restart state (watermark and per-device emitted-through marks, see
:mod:`streambind.stream.restart`), in the commit metadata and, for brokers that drop
metadata, on the state topic.

- ``at_least_once``: the consumer commits the offsets; the state topic is written first,
  so a crash between the two leaves the state ahead of the offset, which is safe.
- ``exactly_once``: outputs, dead letters, restart state and offsets go into one Kafka
  transaction per commit (KIP-447: the consumer's group metadata fences a member that lost
  its partitions). A crash aborts the open transaction, so ``read_committed`` readers never
  see the outputs that the replay is about to produce again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, ProducerFencedError
from kafka.structs import OffsetAndMetadata

from streambind.errors import StreambindError
from streambind.stream.config import StreamConfig
from streambind.stream.partition import PartitionState
from streambind.stream.restart import state_key
from streambind.stream.windows import WindowKey, restart_watermark_ns

logger = logging.getLogger(__name__)

STATE_WRITE_TIMEOUT_S = 30.0


class TransactionRestarted(StreambindError):
    """A transaction could not commit and was aborted; a new one is open. Its outputs are
    gone, so the caller must replay from the committed offsets."""


class Committer:
    """Commits the offsets (and restart state) the released windows cover."""

    def __init__(self, config: StreamConfig, producer: Any) -> None:
        self.config = config
        self.producer = producer
        self.transactional = config.exactly_once
        self.commits = 0
        self._metadata_ok: bool | None = None  # does the broker keep commit metadata?
        self._committed: dict[TopicPartition, tuple[int, str]] = {}

    def begin(self) -> None:
        """Start the first transaction (exactly-once); also fences an older producer that
        used the same transactional id."""
        if self.transactional:
            self.producer.init_transactions()
            self.producer.begin_transaction()

    def abort(self) -> None:
        """Abort the open transaction, if any (best effort: on the way out)."""
        if not self.transactional:
            return
        try:
            self.producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - the broker aborts it on timeout anyway
            logger.warning("could not abort the open transaction: %s", exc)

    def restart_transaction(self) -> None:
        """Abort the open transaction and begin a new one (after losing partitions)."""
        self.producer.abort_transaction()
        self.producer.begin_transaction()
        self._committed.clear()

    def forget(self, tp: TopicPartition) -> None:
        """Drop what was committed for a revoked partition."""
        self._committed.pop(tp, None)

    def commit(
        self, consumer: KafkaConsumer, parts: Mapping[TopicPartition, PartitionState]
    ) -> bool:
        """Commit what changed since the last commit; returns whether offsets were committed.

        In exactly-once mode the caller must have flushed the producer and released every
        acknowledged window first, so that this transaction's outputs are all covered.
        """
        offsets = self.offsets(parts)
        need_state = bool(offsets) and bool(self.config.state_topic) and not self._metadata_ok
        if self.transactional:
            try:
                if offsets:
                    if need_state:
                        self._write_state(offsets, wait=False)  # part of the transaction
                    self.producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                self.producer.commit_transaction()
            except ProducerFencedError:
                raise  # another instance took over this transactional id: stop
            except KafkaError as exc:
                # Typically a rebalance: the group generation in the offsets is stale.
                self.restart_transaction()
                raise TransactionRestarted(f"transaction aborted: {exc}") from exc
            self.producer.begin_transaction()
        elif offsets:
            if need_state:
                self._write_state(offsets, wait=True)
            consumer.commit(offsets)
        if not offsets:
            return False
        if self._metadata_ok is None:
            self._check_metadata(consumer, offsets)
        logger.debug("committed %s", {str(tp): (om.offset, om.metadata)
                                      for tp, om in offsets.items()})
        self.commits += 1
        for tp, om in offsets.items():
            self._committed[tp] = (om.offset, om.metadata)
        return True

    def offsets(
        self, parts: Mapping[TopicPartition, PartitionState]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per partition, the committable offset and its restart state, where either moved."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, part in list(parts.items()):
            offset = part.tracker.committable().get(tp.partition)
            if offset is None:
                continue
            keys = [h for h in part.tracker.unreleased(tp.partition) if isinstance(h, WindowKey)]
            wm = restart_watermark_ns(part.windower.watermark_ns, keys)
            meta = json.dumps({"wm": wm, "dev": part.device_floors(keys, wm)},
                              separators=(",", ":"))
            if len(meta) > self.config.max_commit_metadata_bytes:
                meta = json.dumps({"wm": wm})  # too many devices: at-least-once still holds
            if self._committed.get(tp) != (offset, meta):
                offsets[tp] = OffsetAndMetadata(offset, meta, -1)
        return offsets

    def _check_metadata(
        self, consumer: KafkaConsumer, offsets: Mapping[TopicPartition, OffsetAndMetadata]
    ) -> None:
        tp, om = next(iter(offsets.items()))
        got = consumer.committed(tp, metadata=True)
        self._metadata_ok = bool(got is not None and got.metadata == om.metadata)
        logger.info("broker %s commit metadata%s", "keeps" if self._metadata_ok else "drops",
                    "" if self._metadata_ok else
                    f"; restart state goes to {self.config.state_topic}")

    def _write_state(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], wait: bool
    ) -> None:
        """Write the restart state before the commit: a crash in between leaves it ahead."""
        futures = [
            self.producer.send(
                self.config.state_topic, key=state_key(self.config.group_id, tp),
                value=json.dumps({"offset": om.offset, **json.loads(om.metadata)}).encode())
            for tp, om in offsets.items()
        ]
        if not wait:
            return
        try:
            for future in futures:
                future.get(timeout=STATE_WRITE_TIMEOUT_S)
        except KafkaError as exc:
            logger.warning("cannot write restart state to %s: %s", self.config.state_topic, exc)
