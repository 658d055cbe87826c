"""Hits into moments: adjacent or overlapping hits of one device become one moment.

Windows overlap (the hop is half a window), so one real event matches several windows in a
row, often of several modalities. A moment keeps its best hit (its window id, modality,
bounds and score) and the span of all the hits merged into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from streambind.memories.store import Hit


@dataclass(frozen=True)
class Moment:
    """A merged run of hits of one device; ``best`` is its highest-scoring hit."""

    best: Hit
    moment_start_ns: int
    moment_end_ns: int
    windows: int
    modalities: tuple[str, ...]
    labels: tuple[str, ...] = field(default=())

    @property
    def score(self) -> float:
        """The best hit's score."""
        return self.best.score

    def to_json(self) -> dict[str, object]:
        """The ``search --json`` object (DESIGN.md "Ground truth and memories")."""
        b = self.best
        return {
            "window_id": b.window_id,
            "device_id": b.device_id,
            "modality": b.modality,
            "window_start_ns": b.window_start_ns,
            "window_end_ns": b.window_end_ns,
            "score": round(b.score, 6),
            "moment_start_ns": self.moment_start_ns,
            "moment_end_ns": self.moment_end_ns,
            "windows": self.windows,
            "modalities": list(self.modalities),
            "labels": list(self.labels),
            "model": b.model,
            "source": {"topic": b.source_topic, "partition": b.source_partition,
                       "first_offset": b.first_offset, "last_offset": b.last_offset},
        }


def merge_moments(hits: Sequence[Hit], gap_ns: int = 0) -> list[Moment]:
    """Merge hits of one device whose windows overlap or are at most ``gap_ns`` apart.

    Returns moments best score first (ties: earlier start, then window id).
    """
    by_device: dict[str, list[Hit]] = {}
    for hit in hits:
        by_device.setdefault(hit.device_id, []).append(hit)
    moments: list[Moment] = []
    for device_hits in by_device.values():
        device_hits.sort(key=lambda h: (h.window_start_ns, h.window_end_ns))
        run: list[Hit] = []
        run_end = 0
        for hit in device_hits:
            if run and hit.window_start_ns > run_end + gap_ns:
                moments.append(_moment(run))
                run = []
            run.append(hit)
            run_end = hit.window_end_ns if len(run) == 1 else max(run_end, hit.window_end_ns)
        if run:
            moments.append(_moment(run))
    moments.sort(key=lambda m: (-m.score, m.moment_start_ns, m.best.window_id))
    return moments


def _moment(run: list[Hit]) -> Moment:
    best = max(run, key=lambda h: (h.score, -h.window_start_ns))
    return Moment(
        best=best,
        moment_start_ns=min(h.window_start_ns for h in run),
        moment_end_ns=max(h.window_end_ns for h in run),
        windows=len(run),
        modalities=tuple(sorted({h.modality for h in run})),
    )
