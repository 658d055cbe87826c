"""A lazily built thread pool that survives ``fork`` (Ray workers, multiprocessing)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


class ForkSafePool:
    """Builds its ``ThreadPoolExecutor`` on first use; a forked child builds its own.

    A child inherits the pool object but not its threads, so a pool carried across a fork
    would hang on its first task.
    """

    def __init__(self, threads: int, name: str):
        self._threads = threads
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> ThreadPoolExecutor:
        """The pool of this process."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._name)
        return self._pool

    def _forget(self) -> None:
        self._pool = None
