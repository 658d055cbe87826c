"""Units shared by every module: one definition of each time constant.

Times carry their unit in their names (``ts_ns``, ``timeout_s``); these convert between them.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000  # nanoseconds per second
NS_PER_MS = 1_000_000  # nanoseconds per millisecond

__all__ = ["NS_PER_MS", "NS_PER_S"]
