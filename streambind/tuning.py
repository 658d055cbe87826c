"""Process settings that the streaming core wants before torch allocates its first tensor.

Featurized batches are large (a batch of 32 vision windows is 19 MB) and freshly allocated
for every batch, so with 4 KiB pages most of a featurizer's time went to page faults: one
per 4 KiB written, about 300 per vision window, more than the resize itself. PyTorch's CPU
allocator asks the kernel for transparent huge pages on allocations of 2 MiB and more when
``THP_MEM_ALLOC_ENABLE=1`` (read once, at its first allocation), which cuts those faults
about 500-fold where THP is in ``madvise`` or ``always`` mode (Linux).
"""

from __future__ import annotations

import os

HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_page_tensors() -> None:
    """Ask torch for huge pages on large CPU tensors, unless the environment says otherwise.

    Only effective before torch's first CPU allocation in the process: the CLI calls it
    first thing, the stream runner (the Ray ingest replica's core) when it is built.
    """
    os.environ.setdefault(HUGE_PAGES_ENV, "1")


__all__ = ["HUGE_PAGES_ENV", "prefer_huge_page_tensors"]
