"""The runner's counters (also exported as Prometheus metrics by the code that counts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RunnerStats:
    """Counters of one runner (also exported as Prometheus metrics)."""

    records_accepted: int = 0
    records_dlq: int = 0
    records_late: int = 0
    windows_queued: int = 0
    windows_dropped: int = 0
    windows_closed_at_bound: int = 0  # closed by the idle timeout during a byte-bound pause
    max_buffered: int = 0
    max_buffered_bytes: int = 0  # peak of open + queued window bytes (backpressure)
    pauses: int = 0
    commits: int = 0
    first_poll_s: float | None = None  # perf_counter() before the poll with the first records
