"""The world model: emergent zero-shot text -> sensor after binding to a frozen vision tower.

A small world model is trained (vision+text CLIP-style, then audio, depth, thermal and IMU
each bound to the frozen vision tower with the recipe, never shown a caption), written as a
bound-model directory, loaded back through ``load_imagebind("world")`` and evaluated on
held-out world windows (a seed the training never used). The claims are relative: far above
chance, and far above both controls (an untrained tower, and a tower bound the same way on shuffled
pairs), which themselves stay near chance.
"""

from __future__ import annotations

import json
import shutil

import pytest

from streambind.bind.evaluate import EvalConfig, evaluate_world, format_report
from streambind.model import load_imagebind
from streambind.model.cache import (
    WORLD_RECIPE_VERSION,
    world_model_current,
    world_model_dir,
    world_model_recipe,
)
from streambind.world.train import WorldTrainConfig, ensure_world_model


@pytest.fixture(scope="module")
def world_dir(world_cache):
    """The session's world model (tests/conftest.py), shared with the demo and e2e tests."""
    return world_cache


def test_world_model_is_a_reusable_bound_model_directory(world_dir) -> None:
    cache, path, cfg = world_dir
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["base"]["derived_from"] == "world"
    assert manifest["base_towers"]["audio"]["temperature"] == pytest.approx(0.05)
    metrics = manifest["extra"]["metrics"]
    assert metrics["config"]["bind_steps"] == cfg.bind_steps
    mtime = (path / "manifest.json").stat().st_mtime_ns
    assert ensure_world_model(cache, cfg=cfg, progress=False) == path  # cached: reused
    assert (path / "manifest.json").stat().st_mtime_ns == mtime
    assert manifest["extra"]["recipe_version"] == WORLD_RECIPE_VERSION


def test_a_world_model_of_another_recipe_is_retrained_not_reused(world_dir, tmp_path) -> None:
    """A cached world model trained by an older version (its manifest has another recipe
    version, or none) is trained again: the demo must not serve a stale model."""
    _, path, _ = world_dir
    stale = world_model_dir(tmp_path)
    shutil.copytree(path, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    del manifest["extra"]["recipe_version"]  # as models written before the field
    (stale / "manifest.json").write_text(json.dumps(manifest))
    assert world_model_recipe(tmp_path) == 1 and not world_model_current(tmp_path)
    tiny = WorldTrainConfig(segments_per_class=2, windows_per_segment=1, clip_steps=2,
                            bind_steps=2, batch_size=8, val_every=2)
    assert ensure_world_model(tmp_path, cfg=tiny, progress=False) == stale
    assert world_model_current(tmp_path)
    retrained = json.loads((stale / "manifest.json").read_text())
    assert retrained["extra"]["metrics"]["config"]["clip_steps"] == 2  # trained anew


BOUND = ("audio", "depth", "thermal", "imu")


def test_emergent_zero_shot_beats_chance_and_controls(world_dir, tmp_path) -> None:
    """Every bound modality: text -> sensor top-1 far above chance and both controls."""
    cache, _, cfg = world_dir
    model = load_imagebind("world", cache_dir=cache)
    report = evaluate_world(model, list(BOUND), EvalConfig(segments_per_class=4),
                            retrieval_pairs=[("audio", "vision")], plot_dir=tmp_path)
    print(format_report(report))
    for modality in BOUND:
        row = report["zero_shot"][modality]
        chance = row["chance"]
        controls = max(row["shuffled_top1"], row["untrained_top1"])
        assert row["control_steps"] == cfg.bind_steps
        assert row["shuffled_top1"] < 2.5 * chance and row["untrained_top1"] < 2.5 * chance
        # Audio binds best (as in the paper's world of sounds with visible sources).
        floor = 3 if modality == "audio" else 2
        assert row["top1"] > floor * chance, (modality, row)
        assert row["top1"] > 2 * controls, (modality, row)
    assert (tmp_path / "confusion-audio.png").is_file()
    agree = report["agreement"]["audio:vision"]
    assert 0 <= agree["agreement"] <= 1
    retr = report["retrieval"]["audio->vision"]
    assert retr["n"] == report["windows"] and retr["R@5"] >= retr["R@1"]
