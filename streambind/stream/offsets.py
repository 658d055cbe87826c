"""Offset tracking: commit a partition only up to records whose outputs are acknowledged.

Every consumed record is reported with the *holds* it belongs to: the keys of the windows
it joined (:class:`~streambind.stream.windows.WindowKey`) and/or a :class:`PendingToken`
for work still in flight on the record itself (for example a dead-letter write not yet
acknowledged). A hold is released once, when its outputs are acknowledged or it was
dropped. The committable offset of a partition is the smallest offset of any record under
an unreleased hold or, when there is none, the last consumed offset + 1. It never goes
backwards. A restarted consumer re-reads from there and rebuilds every unreleased window.

Holds are opaque hashables; a key shared by several partitions is tracked on each one.
Each operation costs O(log n) (a heap per partition with lazy deletion).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

logger = logging.getLogger(__name__)


class PendingToken(NamedTuple):
    """A hold on a single record (e.g. its dead-letter write is not acknowledged yet)."""

    partition: int
    offset: int
    reason: str = "pending"


@dataclass(slots=True)
class _Partition:
    next_offset: int = 0  # last consumed + 1
    floor: int = 0  # largest committable offset handed out
    seen: bool = False
    first_offset: dict[Hashable, int] = field(default_factory=dict)  # unreleased holds
    heap: list[tuple[int, int, Hashable]] = field(default_factory=list)


class OffsetTracker:
    """Which offset of each partition is safe to commit. Not thread-safe: one caller."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}
        self._where: dict[Hashable, set[int]] = {}  # hold -> partitions holding it
        self._tie = itertools.count()

    def consumed(self, partition: int, offset: int, holds: Iterable[Hashable] = ()) -> None:
        """Record that the record at ``offset`` was read and now belongs to ``holds``.

        ``holds`` are the window keys the record joined and/or pending tokens; empty means
        the record needs nothing more (e.g. a late record, or a duplicate).
        """
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        if not part.seen or offset + 1 > part.next_offset:
            part.next_offset = offset + 1
        part.seen = True
        for hold in holds:
            first = part.first_offset.get(hold)
            if first is None or offset < first:
                part.first_offset[hold] = offset
                heapq.heappush(part.heap, (offset, next(self._tie), hold))
                self._where.setdefault(hold, set()).add(partition)

    def hold(self, partition: int, offset: int, reason: str = "pending") -> PendingToken:
        """Consume the record at ``offset`` under a fresh :class:`PendingToken` and return it."""
        token = PendingToken(partition, offset, reason)
        self.consumed(partition, offset, (token,))
        return token

    def released(self, hold: Hashable) -> bool:
        """Release ``hold`` (outputs acknowledged, or window dropped); False if unknown."""
        partitions = self._where.pop(hold, None)
        if not partitions:
            logger.debug("release of an unknown hold %r", hold)
            return False
        for p in partitions:
            part = self._parts[p]
            part.first_offset.pop(hold, None)
            self._prune(part)
        return True

    def committable(self) -> dict[int, int]:
        """Per partition consumed from, the offset to commit (the next record to read).

        Never smaller than a value returned before for that partition.
        """
        out: dict[int, int] = {}
        for p, part in self._parts.items():
            if not part.seen:
                continue
            self._prune(part)
            candidate = part.heap[0][0] if part.heap else part.next_offset
            if candidate < part.floor:
                logger.warning(
                    "partition %d: a hold at offset %d is below the committed %d (seek "
                    "without forget_partition?); keeping %d", p, candidate, part.floor,
                    part.floor,
                )
            part.floor = max(part.floor, candidate)
            out[p] = part.floor
        return out

    def unreleased(self, partition: int) -> list[Hashable]:
        """The unreleased holds on ``partition`` (O(n); for commits and diagnostics)."""
        part = self._parts.get(partition)
        return list(part.first_offset) if part else []

    def forget_partition(self, partition: int) -> None:
        """Drop a partition's state (revoked in a rebalance, or the consumer seeks)."""
        part = self._parts.pop(partition, None)
        if part is None:
            return
        for hold in part.first_offset:
            where = self._where.get(hold)
            if where is not None:
                where.discard(partition)
                if not where:
                    del self._where[hold]

    def pending_count(self, partition: int | None = None) -> int:
        """Number of unreleased holds, on one partition or on all of them."""
        if partition is not None:
            part = self._parts.get(partition)
            return len(part.first_offset) if part else 0
        return len(self._where)

    @staticmethod
    def _prune(part: _Partition) -> None:
        heap = part.heap
        while heap and part.first_offset.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
