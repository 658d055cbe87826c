"""Huge pages for torch's large CPU tensors (streambind.tuning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambind.tuning import HUGE_PAGES_ENV, prefer_huge_page_tensors

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# Fresh batch tensors as the featurizers make them (a vision batch of 32 is 38.5 MB),
# written once each; prints the minor page faults that cost.
_ALLOCATE = """
import resource, torch
torch.empty(1).fill_(0)  # torch reads the setting at its first CPU allocation
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(32, 3, 2, 224, 224).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_sets_the_setting_unless_the_environment_has_one(monkeypatch):
    monkeypatch.delenv(HUGE_PAGES_ENV, raising=False)
    prefer_huge_page_tensors()
    assert os.environ[HUGE_PAGES_ENV] == "1"
    monkeypatch.setenv(HUGE_PAGES_ENV, "0")  # an operator's choice wins
    prefer_huge_page_tensors()
    assert os.environ[HUGE_PAGES_ENV] == "0"


def _faults(setting: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV}
    if setting is not None:
        env[HUGE_PAGES_ENV] = setting
    out = subprocess.run([sys.executable, "-c", _ALLOCATE], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not THP.exists() or "[never]" in THP.read_text(),
                    reason="transparent huge pages are off on this machine")
def test_huge_pages_cut_the_page_faults_of_batch_tensors():
    plain, huge = _faults(None), _faults("1")
    # 5 x 38.5 MB in 4 KiB pages is ~47,000 faults; in 2 MiB pages, a few hundred.
    assert plain > 20_000
    assert huge * 4 < plain, (plain, huge)
