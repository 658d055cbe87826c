"""Scoring labelled events against the simulator's ground truth.

``streambind simulate --truth FILE`` writes one JSON line per activity segment,
``{"device_id", "start_ns", "end_ns", "activity"}`` (the device's clock, as its records
carry it). :class:`TruthIndex` holds those segments per device (read incrementally with
:class:`TruthFollower`, so a live file can be followed) and says which activity a window
shows; :class:`Accuracy` keeps a running top-1 accuracy per modality (``fused``
included) over the events of ``streambind.events``.

A window is scored only when one activity covers at least ``min_share`` of it (default
0.9): a window that straddles two activities has no single right answer, and counting it
either way would blur the figure. Events are keyed by ``event_id`` and the latest record
of an id wins, because fused events are re-published under the same id as more of their
modalities arrive.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

MIN_SHARE = 0.9
MAX_SEGMENTS_PER_DEVICE = 10_000  # ~1 day of a device's script; older ones are dropped
MAX_TRACKED_EVENTS = 50_000  # ids remembered for re-publications; older ones are final
MAX_PENDING_EVENTS = 5_000  # events waiting for their truth; the oldest are dropped


@dataclass(frozen=True)
class Segment:
    """One ground-truth segment, device clock, ns."""

    device_id: str
    start_ns: int
    end_ns: int
    activity: str


def parse_truth_line(line: str) -> Segment | None:
    """A segment from one ``--truth`` line; None (logged) when the line is not one."""
    try:
        doc = json.loads(line)
        seg = Segment(str(doc["device_id"]), int(doc["start_ns"]), int(doc["end_ns"]),
                      str(doc["activity"]))
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring a ground-truth line that is not a segment (%s): %.120r",
                       exc, line)
        return None
    return seg if seg.end_ns > seg.start_ns else None


class TruthIndex:
    """Ground-truth segments per device, and the activity a window shows."""

    def __init__(self, segments: Iterable[Segment] = ()) -> None:
        self._starts: dict[str, list[int]] = defaultdict(list)
        self._segs: dict[str, list[Segment]] = defaultdict(list)
        for seg in segments:
            self.add(seg)

    def add(self, seg: Segment) -> None:
        """Add one segment (segments of a device may arrive in any order)."""
        starts, segs = self._starts[seg.device_id], self._segs[seg.device_id]
        i = bisect.bisect(starts, seg.start_ns)
        starts.insert(i, seg.start_ns)
        segs.insert(i, seg)
        if len(segs) > MAX_SEGMENTS_PER_DEVICE:
            del starts[0], segs[0]

    def devices(self) -> list[str]:
        """Devices with at least one segment."""
        return sorted(d for d, s in self._segs.items() if s)

    def known_until_ns(self, device_id: str) -> int | None:
        """The end of the device's latest known segment (truth is known up to there)."""
        segs = self._segs.get(device_id)
        return segs[-1].end_ns if segs else None  # a device's segments are contiguous

    def activity_at(self, device_id: str, ts_ns: int) -> str | None:
        """The activity in force at ``ts_ns``, None when no segment covers it."""
        starts, segs = self._starts.get(device_id, []), self._segs.get(device_id, [])
        i = bisect.bisect(starts, ts_ns) - 1
        if i >= 0 and segs[i].start_ns <= ts_ns < segs[i].end_ns:
            return segs[i].activity
        return None

    def window_activity(self, device_id: str, start_ns: int, end_ns: int,
                        min_share: float = MIN_SHARE) -> str | None:
        """The activity covering at least ``min_share`` of ``[start_ns, end_ns)``, else None
        (the window straddles activities, or no truth covers it)."""
        length = end_ns - start_ns
        if length <= 0:
            return None
        starts, segs = self._starts.get(device_id, []), self._segs.get(device_id, [])
        cover: dict[str, int] = defaultdict(int)
        i = max(bisect.bisect(starts, start_ns) - 1, 0)
        while i < len(segs) and segs[i].start_ns < end_ns:
            overlap = min(segs[i].end_ns, end_ns) - max(segs[i].start_ns, start_ns)
            if overlap > 0:
                cover[segs[i].activity] += overlap
            i += 1
        if not cover:
            return None
        best, covered = max(cover.items(), key=lambda kv: kv[1])
        return best if covered >= min_share * length else None


class TruthFollower:
    """Reads new complete lines of a growing ``--truth`` file into a :class:`TruthIndex`."""

    def __init__(self, path: str | Path, index: TruthIndex | None = None) -> None:
        self.path = Path(path)
        self.index = index if index is not None else TruthIndex()
        self._fh: IO[str] | None = None
        self._partial = ""

    def poll(self) -> int:
        """Read what was appended since the last call; returns the segments added."""
        if self._fh is None:
            if not self.path.exists():
                return 0
            self._fh = open(self.path, encoding="utf-8")  # noqa: SIM115 - kept open to follow
        added = 0
        chunk = self._fh.read()
        if not chunk:
            return 0
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for its newline
        for line in lines:
            seg = parse_truth_line(line) if line.strip() else None
            if seg is not None:
                self.index.add(seg)
                added += 1
        return added

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def top_label(event: Mapping[str, Any]) -> str | None:
    """The event's best label (labels are best first), None when it has none."""
    labels = event.get("labels") or []
    return str(labels[0]["label"]) if labels else None


@dataclass
class Tally:
    """Scored windows of one modality."""

    right: int = 0
    scored: int = 0

    @property
    def accuracy(self) -> float | None:
        """Share right, None before the first scored window."""
        return self.right / self.scored if self.scored else None


class Accuracy:
    """Running top-1 accuracy per modality of events against a :class:`TruthIndex`.

    :meth:`add` takes events as they arrive; those whose window the truth does not cover
    yet wait (bounded) and are scored by a later :meth:`add` or :meth:`settle` once it
    does. A window that straddles activities (or that the truth does not cover, at the end
    of a run) is counted under ``ambiguous`` and not scored.
    """

    def __init__(self, truth: TruthIndex, *, min_share: float = MIN_SHARE,
                 max_tracked: int = MAX_TRACKED_EVENTS) -> None:
        self.truth = truth
        self.min_share = min_share
        self.max_tracked = max_tracked
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.ambiguous: dict[str, int] = defaultdict(int)
        self.confusions: dict[str, dict[tuple[str, str], int]] = defaultdict(
            lambda: defaultdict(int))
        self._scored: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._pending: OrderedDict[str, Mapping[str, Any]] = OrderedDict()

    def add(self, event: Mapping[str, Any]) -> None:
        """Score (or queue) one event; a later record with the same ``event_id`` replaces
        the earlier one's contribution."""
        key = str(event.get("event_id") or id(event))
        self._pending.pop(key, None)
        self._pending[key] = event
        while len(self._pending) > MAX_PENDING_EVENTS:
            self._pending.popitem(last=False)
        self.settle()

    def settle(self, final: bool = False) -> None:
        """Score the waiting events that the truth now covers; ``final`` (the truth is
        complete) scores all of them, a window the truth does not cover as ambiguous."""
        done = []
        for key, event in self._pending.items():
            device, start, end = event["device_id"], event["window_start_ns"], \
                event["window_end_ns"]
            known = self.truth.known_until_ns(device)
            if not final and (known is None or known < end):
                continue  # the device's truth for this window is not written yet
            done.append(key)
            self._score(key, event, self.truth.window_activity(device, start, end,
                                                               self.min_share))
        for key in done:
            del self._pending[key]

    def _score(self, key: str, event: Mapping[str, Any], truth: str | None) -> None:
        modality = str(event["modality"])
        old = self._scored.pop(key, None)
        if old is not None:  # a re-publication: undo the earlier record's contribution
            self._unscore(*old)
        if truth is None:
            self.ambiguous[modality] += 1
            self._scored[key] = (modality, "", "")
        else:
            predicted = top_label(event) or ""
            tally = self.tallies[modality]
            tally.scored += 1
            tally.right += predicted == truth
            self.confusions[modality][(truth, predicted)] += 1
            self._scored[key] = (modality, truth, predicted)
        while len(self._scored) > self.max_tracked:
            self._scored.popitem(last=False)  # final: no re-publication can change it now

    def _unscore(self, modality: str, truth: str, predicted: str) -> None:
        if not truth:
            self.ambiguous[modality] -= 1
            return
        tally = self.tallies[modality]
        tally.scored -= 1
        tally.right -= predicted == truth
        self.confusions[modality][(truth, predicted)] -= 1

    @property
    def pending(self) -> int:
        """Events waiting for their truth."""
        return len(self._pending)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per modality (sorted): ``accuracy``, ``right``, ``scored``, ``ambiguous`` and two
        controls from the scored windows' confusion counts: ``majority_share`` (the
        accuracy of always answering the most frequent true activity) and
        ``chance_agreement`` (sum over activities of P(truth) x P(label): what labels
        with the same frequencies but no relation to the windows would score)."""
        names = sorted(set(self.tallies) | set(self.ambiguous))
        return {m: {"accuracy": self.tallies[m].accuracy, "right": self.tallies[m].right,
                    "scored": self.tallies[m].scored, "ambiguous": self.ambiguous[m],
                    **controls(self.confusions[m])}
                for m in names}


def controls(confusion: Mapping[tuple[str, str], int]) -> dict[str, float | None]:
    """``majority_share`` and ``chance_agreement`` of (truth, predicted) -> count."""
    truth: dict[str, int] = defaultdict(int)
    predicted: dict[str, int] = defaultdict(int)
    for (t, p), n in confusion.items():
        truth[t] += n
        predicted[p] += n
    total = sum(truth.values())
    if total <= 0:
        return {"majority_share": None, "chance_agreement": None}
    return {"majority_share": max(truth.values()) / total,
            "chance_agreement": sum(n * predicted.get(t, 0) for t, n in truth.items())
            / total**2}
