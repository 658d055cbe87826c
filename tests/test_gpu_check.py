"""The GPU check's CPU dry run: scripts/gpu-check.sh --dry-run, without Ray, end to end.

The script is what a session lent a GPU runs in one call; this runs the same script and
code on the CPU (tiny preset, tiny sizes) with Ray made unimportable, as on that machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambind.bench import gpu
from streambind.model.config import MODEL_MODALITIES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"

BLOCK_RAY = '''
import sys

class _NoRay:
    """The GPU machine has no Ray: any import of it fails here too."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("ray is not installed on the GPU machine")
        return None

sys.meta_path.insert(0, _NoRay())
'''


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(BLOCK_RAY)
    out = tmp / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out),
           "WHEELS": str(tmp / "no-wheels"), "PYTHONPATH": str(tmp / "site")}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=240)
    return proc, out


def test_dry_run_succeeds_without_ray(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DRY RUN" in (out / "gpu-figures.md").read_text()
    assert (out / "gpu-check.log").is_file() and (out / "nvidia-smi.txt").is_file()


def test_dry_run_writes_every_figure(dry_run):
    _, out = dry_run
    doc = json.loads((out / "gpu-figures.json").read_text())
    assert doc["options"]["dry_run"] and doc["options"]["preset"] == "tiny"
    rows = {(r["tower"], r["batch"]): r for r in doc["towers"]}
    assert set(rows) == {(m, b) for m in MODEL_MODALITIES for b in (1, 2)}
    for row in rows.values():
        assert row["sdpa_items_per_s"] > 0 and row["reference_items_per_s"] > 0
        assert row["max_rel_diff"] < 1e-4  # both attention paths agree
    assert rows[("imu", 1)]["tokens"] == 251 and rows[("vision", 2)]["tokens"] == 257
    stream = {r["modality"]: r for r in doc["stream"]}
    assert set(stream) == {"audio", "imu"}
    for row in stream.values():
        assert row["windows"] == row["expected_windows"] > 0  # no window lost
        assert row["core_windows_per_s"] > 0 and row["model_windows_per_s"] > 0
        assert row["core_over_model"] == pytest.approx(
            row["core_windows_per_s"] / row["model_windows_per_s"])
    assert doc["skipped"] == []


def test_gpu_run_refuses_without_a_gpu(tmp_path, capsys, monkeypatch):
    import argparse

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser()
    gpu.configure_parser(parser)
    assert gpu.run(parser.parse_args(["--out", str(tmp_path)])) == 2
    assert "no CUDA device" in capsys.readouterr().err
