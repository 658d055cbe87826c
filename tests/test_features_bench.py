"""`streambind bench features` runs end to end on a tiny batch and reports both ratios."""

from __future__ import annotations

import argparse
import io
import re
import sys

from streambind.bench import features as bench


def test_bench_features_small_run(monkeypatch):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args(
        [
            "--batch-size",
            "3",
            "--repeats",
            "1",
            "--width",
            "64",
            "--height",
            "48",
            "--sample-rates",
            "48000",
        ]
    )
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    assert bench.run(args) == 0
    text = buf.getvalue()
    for modality in ("audio", "vision"):
        match = re.search(rf"RATIO {modality} batched / per-clip reference loop: ([0-9.]+)x", text)
        assert match and float(match.group(1)) > 0
    # The baselines compute the same numbers as the batched featurizers.
    diffs = [float(d) for d in re.findall(r"max \|batched - reference\| = ([0-9.e+-]+)", text)]
    assert len(diffs) == 4 and max(diffs) < 1e-3
    for modality in ("depth", "thermal"):
        match = re.search(rf"RATIO {modality} batched / per-frame reference loop: ([0-9.]+)x", text)
        assert match and float(match.group(1)) > 0
    assert diffs[2:] == [0.0, 0.0]  # depth and thermal: Pillow's numbers exactly
