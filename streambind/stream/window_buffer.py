"""What one open window holds: retained chunks, coverage spans, sequence numbers and bytes.

Audio and imu windows keep every chunk (up to the window's byte bound). Frame windows
(vision, depth, thermal) keep only a few *candidate* frames, the ones the assembler may
pick, plus a lightweight ``(ts_ns, end_ns)`` span of every frame for coverage:

* ``ends`` (vision: first and last frame): the :data:`FRAME_CANDIDATES` earliest and latest;
* ``middle`` (depth, thermal: the frame nearest the middle): the :data:`FRAME_CANDIDATES`
  nearest the window's middle (ties: the earlier).

The extra candidates are fallbacks for a selected frame that fails to decode. A window
holds at most ``max_bytes`` of chunk payload: a chunk beyond it is not retained and is
counted in ``over_budget``. For audio/imu its span then does not count for coverage (the
window's coverage says what assembly will really have); frame spans always count, and the
selected frames themselves are always kept (the bound drops fallbacks first).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Literal

from streambind.stream.chunks import SensorChunk

FRAME_CANDIDATES = 3  # frames kept around each frame the assembler selects
Select = Literal["all", "ends", "middle"]
_SELECT: dict[str, Select] = {"vision": "ends", "depth": "middle", "thermal": "middle"}


def selection_of(modality: str) -> Select:
    """How a window of ``modality`` picks its frames (``all`` for audio and imu)."""
    return _SELECT.get(modality, "all")


def chunk_nbytes(chunk: SensorChunk) -> int:
    """Payload bytes ``chunk`` holds: its ``nbytes`` when it has one, else its array's."""
    nbytes = getattr(chunk, "nbytes", None)
    if nbytes is None:
        nbytes = chunk.data.nbytes
    return int(nbytes)


def _order(chunk: SensorChunk) -> tuple[int, int, int]:
    return (chunk.ts_ns, chunk.seq, chunk.offset)


class WindowBuffer:
    """The contents of one open window. Not thread-safe (one windower, one caller)."""

    __slots__ = ("start_ns", "end_ns", "select", "max_bytes", "chunks", "keys", "sizes",
                 "spans", "seqs", "first_offset", "nbytes", "over_budget")

    def __init__(self, start_ns: int, end_ns: int, select: Select,
                 max_bytes: int | None = None) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.select = select
        self.max_bytes = max_bytes
        self.chunks: list[SensorChunk] = []  # frames: sorted by (ts, seq, offset)
        self.keys: list[tuple[int, int, int]] = []  # frames: the sort keys of ``chunks``
        self.sizes: list[int] = []  # bytes of ``chunks``, same order
        self.spans: list[tuple[int, int]] = []  # coverage spans (see the module docstring)
        self.seqs: set[int] = set()
        self.first_offset = -1  # smallest offset of any chunk that joined, retained or not
        self.nbytes = 0
        self.over_budget = 0

    @property
    def frames(self) -> int:
        """Number of chunks that joined (frames: every frame, retained or not)."""
        return len(self.seqs)

    def add(self, chunk: SensorChunk) -> int:
        """Put ``chunk`` in; returns the change in retained bytes (may be negative)."""
        self.seqs.add(chunk.seq)
        if self.first_offset < 0 or chunk.offset < self.first_offset:
            self.first_offset = chunk.offset
        size = chunk_nbytes(chunk)
        before = self.nbytes
        if self.select == "all":
            if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
                self.over_budget += 1
                return 0
            self.chunks.append(chunk)
            self.sizes.append(size)
            self.spans.append((chunk.ts_ns, max(chunk.end_ns, chunk.ts_ns + 1)))
            self.nbytes += size
            return size
        self.spans.append((chunk.ts_ns, max(chunk.end_ns, chunk.ts_ns + 1)))
        key = _order(chunk)
        i = bisect.bisect(self.keys, key)
        self.keys.insert(i, key)
        self.chunks.insert(i, chunk)
        self.sizes.insert(i, size)
        self.nbytes += size
        limit = 2 * FRAME_CANDIDATES if self.select == "ends" else FRAME_CANDIDATES
        while len(self.chunks) > limit:
            self._remove(self._least_wanted())
        while (self.max_bytes is not None and self.nbytes > self.max_bytes
               and len(self.chunks) > (2 if self.select == "ends" else 1)):
            self._remove(self._least_wanted())
            self.over_budget += 1
        return self.nbytes - before

    def retained(self) -> tuple[SensorChunk, ...]:
        """The retained chunks in (ts, seq, offset) order."""
        if self.select == "all":
            return tuple(sorted(self.chunks, key=_order))
        return tuple(self.chunks)

    def coverage_spans(self, hold_ns: int | None) -> list[tuple[int, int]]:
        """Time-ordered coverage spans; frames held up to the next one within ``hold_ns``."""
        spans = sorted(self.spans)
        if hold_ns is not None:
            for i in range(len(spans) - 1):
                (ts, stop), next_ts = spans[i], spans[i + 1][0]
                if next_ts - ts <= hold_ns:
                    spans[i] = (ts, max(stop, next_ts))
        return spans

    def _least_wanted(self) -> int:
        """Index of the candidate to drop first (never a selected frame while others exist)."""
        n = len(self.chunks)
        if self.select == "ends":
            return n // 2  # the innermost: farthest from both the first and the last frame
        mid = (self.start_ns + self.end_ns) // 2
        first, last = self.keys[0], self.keys[-1]
        # The farthest from the middle is at one end of the sorted list; on a tie the later
        # one goes (the assembler prefers the earlier).
        return 0 if abs(first[0] - mid) > abs(last[0] - mid) else n - 1

    def _remove(self, i: int) -> None:
        self.nbytes -= self.sizes.pop(i)
        del self.chunks[i]
        del self.keys[i]


def coverage_and_gaps(
    spans_ns: Iterable[tuple[int, int]], start_ns: int, end_ns: int, gap_tolerance_ns: int = 0
) -> tuple[float, tuple[tuple[int, int], ...]]:
    """Fraction of ``[start_ns, end_ns)`` covered by the union of ``spans_ns``, and the gaps.

    Gaps are the uncovered stretches longer than ``gap_tolerance_ns``, in time order.
    """
    size = end_ns - start_ns
    clipped = sorted(
        (max(s, start_ns), min(e, end_ns)) for s, e in spans_ns if e > start_ns and s < end_ns
    )
    covered = 0
    gaps: list[tuple[int, int]] = []
    cursor = start_ns
    for s, e in clipped:
        if s > cursor:
            if s - cursor > gap_tolerance_ns:
                gaps.append((cursor, s))
            cursor = s
        if e > cursor:
            covered += e - cursor
            cursor = e
    if end_ns - cursor > gap_tolerance_ns:
        gaps.append((cursor, end_ns))
    return covered / size, tuple(gaps)
