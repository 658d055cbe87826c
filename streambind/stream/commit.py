"""Offset commits with restart state, at least once or exactly once.

What a partition may commit comes from its :class:`~streambind.stream.offsets.OffsetTracker`:
never past the first record of a window (of any device) whose outputs are not yet
acknowledged. With each offset goes the restart state (per device, see
:mod:`streambind.stream.restart`), in the commit metadata when it fits and the broker keeps
it, and on the state topic otherwise.

- ``at_least_once``: the consumer commits the offsets; the state topic is written first,
  so a crash between the two leaves the state ahead of the offset, which is safe. A commit
  that fails because the group is rebalancing (``CommitFailedError`` and its kin) or
  because the state could not be written is not fatal: nothing is marked committed, and the
  next commit after the rebalance retries (the records are replayed at worst).
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
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    OffsetMetadataTooLargeError,
    ProducerFencedError,
    RebalanceInProgressError,
    RetriableError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from streambind.errors import StreambindError
from streambind.stream.config import StreamConfig
from streambind.stream.partition import PartitionState
from streambind.stream.restart import SIDE, state_key

logger = logging.getLogger(__name__)

STATE_WRITE_TIMEOUT_S = 30.0
# A commit failing with these is retried at the next commit (after the rebalance).
RETRIED_COMMIT_ERRORS = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError,
                         UnknownMemberIdError, RetriableError)
_SIDE_META = json.dumps(SIDE, separators=(",", ":"))


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
        self._docs: dict[TopicPartition, str] = {}  # full restart documents of ``offsets()``
        self._max_metadata_bytes = config.max_commit_metadata_bytes
        self.failed_commits = 0

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
        acknowledged window first, so that this transaction's outputs are all covered. At
        least once, a commit refused because of a rebalance (or a state write that failed)
        returns False and is retried by the next call.
        """
        offsets = self.offsets(parts)
        need_state = bool(offsets) and bool(self.config.state_topic) and (
            not self._metadata_ok or any(om.metadata == _SIDE_META for om in offsets.values()))
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
            if need_state and not self._write_state(offsets, wait=True):
                self.failed_commits += 1
                return False  # committing without its state could rebuild partial windows
            try:
                consumer.commit(offsets)
            except OffsetMetadataTooLargeError:
                self.failed_commits += 1
                self._max_metadata_bytes = min(self._max_metadata_bytes, len(_SIDE_META))
                logger.warning("the broker refused the commit metadata as too large; restart "
                               "state goes to %s from now on", self.config.state_topic)
                return False
            except RETRIED_COMMIT_ERRORS as exc:
                self.failed_commits += 1
                logger.warning("commit failed (%s: %s); retrying after the rebalance",
                               type(exc).__name__, exc)
                return False
        if not offsets:
            return False
        if self._metadata_ok is None:
            self._check_metadata(consumer, offsets)
        logger.debug("committed %s", {str(tp): om.offset for tp, om in offsets.items()})
        self.commits += 1
        for tp, om in offsets.items():
            self._committed[tp] = (om.offset, self._docs[tp])
        return True

    def offsets(
        self, parts: Mapping[TopicPartition, PartitionState]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per partition, the committable offset and its restart state, where either moved.

        The metadata is the restart document when it fits (and the broker keeps metadata),
        else the marker that sends a restarted consumer to the state topic.
        """
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, part in list(parts.items()):
            offset = part.commit_point()
            if offset is None:
                continue
            doc = json.dumps(part.restart_doc(), separators=(",", ":"))
            if self._committed.get(tp) == (offset, doc):
                continue
            self._docs[tp] = doc
            meta = doc
            if len(doc) > self._max_metadata_bytes or self._metadata_ok is False:
                if self.config.state_topic:
                    meta = _SIDE_META
                elif len(doc) > self._max_metadata_bytes:
                    logger.warning("restart state of %s (%d bytes) does not fit in the commit "
                                   "metadata and there is no state topic: dropped", tp,
                                   len(doc))
                    meta = json.dumps({"v": SIDE["v"], "dev": {}})
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
    ) -> bool:
        """Write the restart state before the commit: a crash in between leaves it ahead.

        Returns whether it was written (always True without ``wait``: the transaction
        decides). A failure to write is logged, not raised (at least once: the caller skips
        this commit and retries).
        """
        try:
            futures = [
                self.producer.send(
                    self.config.state_topic, key=state_key(self.config.group_id, tp),
                    value=json.dumps({"offset": om.offset, **json.loads(self._docs[tp])},
                                     separators=(",", ":")).encode())
                for tp, om in offsets.items()
            ]
            if wait:
                for future in futures:
                    future.get(timeout=STATE_WRITE_TIMEOUT_S)
        except KafkaError as exc:
            if not wait:
                raise  # exactly once: the transaction is aborted and replayed
            logger.warning("cannot write restart state to %s: %s; commit skipped",
                           self.config.state_topic, exc)
            return False
        return True
