"""What one benchmark pass costs: its peak resident memory and the CPU it used.

:class:`Peak`: the process's peak resident set (``VmHWM``), reset at the start of the pass
(``/proc/self/clear_refs``), so the figure is that pass's own peak; without the reset (not
Linux) it is the process's peak so far (``ru_maxrss``). :class:`CpuSpan`: user + system CPU
seconds of this process (every thread) and of another one (the embedded broker) over a
span.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
from collections.abc import Sequence


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM, the peak resident set
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Peak:
    """The resident baseline at the start of a pass and its peak during it (MB)."""

    def __enter__(self) -> Peak:
        gc.collect()
        self.reset = _reset_peak()
        self.base_mb = (_status_kb("VmRSS") or 0) / 1024
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kb("VmHWM") if self.reset else None
        kb = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_mb = kb / 1024


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pid_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (None: unknown or not Linux)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSpan:
    """CPU seconds of this process and of the broker (``broker_pid``) from :meth:`mark`
    (the start of a timed span) to :meth:`stop`."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.process_s = 0.0
        self.broker_s: float | None = None
        self._start: tuple[float, float | None] | None = None

    def read(self) -> tuple[float, float | None]:
        """This process's and the broker's CPU seconds so far."""
        return _process_cpu_s(), _pid_cpu_s(self.broker_pid)

    @property
    def marked(self) -> bool:
        """Whether the span has started."""
        return self._start is not None

    def mark(self, reading: tuple[float, float | None] | None = None) -> None:
        """Start the span now, or at ``reading`` (a :meth:`read` taken earlier)."""
        self._start = reading if reading is not None else self.read()

    def stop(self) -> None:
        """End the span (nothing to measure if it never started)."""
        if self._start is None:
            return
        process0, broker0 = self._start
        self.process_s = _process_cpu_s() - process0
        broker1 = _pid_cpu_s(self.broker_pid)
        if broker0 is not None and broker1 is not None:
            self.broker_s = broker1 - broker0


def cpu_text(cpu: CpuSpan) -> str:
    """``process`` or ``process + broker N`` CPU seconds of one span."""
    broker = "" if cpu.broker_s is None else f" + broker {cpu.broker_s:.2f}"
    return f"{cpu.process_s:.2f}{broker}"


def cpu_summary(cpus: Sequence[tuple[float, CpuSpan, CpuSpan]]) -> str:
    """Median CPU of the passes, and the cores the core would need busy throughout to
    finish in twice the raw time at that CPU (what a 0.5x ratio asks of the machine)."""
    def median(values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    raw_proc = median([raw.process_s for _, raw, _ in cpus])
    raw_broker = median([raw.broker_s for _, raw, _ in cpus])
    core_proc = median([core.process_s for _, _, core in cpus])
    core_broker = median([core.broker_s for _, _, core in cpus])
    needed = median([(core.process_s + (core.broker_s or 0.0)) / (2 * raw_s)
                     for raw_s, _, core in cpus])
    broker = (f"broker {raw_broker:.2f} s / {core_broker:.2f} s"
              if raw_broker is not None and core_broker is not None
              else "broker not measured (external)")
    return (f"CPU per pass (medians): raw consumer {raw_proc:.2f} s, core process "
            f"{core_proc:.2f} s; {broker}; finishing in twice the raw time at this CPU needs "
            f"{needed:.2f} cores busy throughout (this machine: {os.cpu_count()})\n")
