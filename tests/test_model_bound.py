"""Bound towers (series, frame) and bound-model directories: configs, forward, save/load."""

import hashlib
import json

import pytest
import torch

from streambind.errors import CheckpointError, ConfigError
from streambind.model import (
    FrameConfig,
    ImageBind,
    ImageBindConfig,
    ModelInputError,
    SeriesConfig,
    WorldModelMissingError,
    bound_tower_configs,
    load_imagebind,
    read_manifest,
    save_bound_model,
    world_model_available,
    world_model_current,
    world_model_dir,
    world_model_recipe,
)
from streambind.model.kinds import tower_config_from_dict, tower_config_to_dict

RADAR = SeriesConfig(name="radar", width=32, depth=2, heads=4, channels=3,
                     sample_rate_hz=100.0, window_s=2.0, patch_samples=10)
TACTILE = FrameConfig(name="tactile", width=32, depth=2, heads=4, height_px=32, width_px=48,
                      patch_px=8, logit_scale=10.0)


def bound_model(base_towers=("vision", "text")):
    model = load_imagebind("tiny", modalities=base_towers)
    model.add_tower(RADAR, seed=1)
    model.add_tower(TACTILE, seed=2)
    return model.eval()


def batch(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    return {
        "radar": torch.randn(b, 3, 200, generator=g),
        "tactile": torch.randn(b, 1, 32, 48, generator=g),
        "vision": torch.randn(b, 3, 224, 224, generator=g),
    }


def embed(model, inputs):
    with torch.no_grad():
        return model({k: v for k, v in inputs.items() if k in model.towers})


# --------------------------------------------------------------------------- configs


def test_series_config_derives_its_input_spec():
    assert RADAR.modality == "radar" and RADAR.samples == 200
    assert RADAR.input_shape == (3, 200)
    assert RADAR.input_spec() == {"kind": "series", "window_s": 2.0, "shape": [3, 200],
                                  "sample_rate_hz": 100.0, "channels": 3}
    assert TACTILE.input_shape == (1, 32, 48)
    assert TACTILE.input_spec() == {"kind": "frame", "window_s": 2.0, "shape": [1, 32, 48]}


@pytest.mark.parametrize("changes", [
    {"name": "imu"},                    # one of the six
    {"name": "fused"},                  # the events' pseudo-modality
    {"name": "Radar"},                  # not [a-z][a-z0-9_]*
    {"name": ""},
    {"sample_rate_hz": 33.3},           # 66.6 samples per window
    {"patch_samples": 7},               # 200 is not a multiple of 7
    {"channels": 0},
    {"window_s": -1.0},
    {"width": 30},                      # not divisible by 4 heads
])
def test_series_config_rejects_bad_values(changes):
    fields = {**tower_config_to_dict(RADAR), **changes}
    with pytest.raises(ConfigError):
        tower_config_from_dict(fields)


def test_frame_config_rejects_frames_that_are_not_whole_patches():
    with pytest.raises(ConfigError, match="patches"):
        FrameConfig(name="tactile", height_px=30, width_px=48, patch_px=8)


@pytest.mark.parametrize("cfg", [RADAR, TACTILE])
def test_tower_config_dict_round_trip(cfg):
    doc = json.loads(json.dumps(tower_config_to_dict(cfg)))
    assert tower_config_from_dict(doc) == cfg


@pytest.mark.parametrize("bad", [
    {"kind": "lidar"},
    {"colour": "red"},
    {"channels": 3.5},
    {"channels": True},
    {"name": 7},
])
def test_tower_config_from_dict_rejects_unknown_kinds_fields_and_types(bad):
    with pytest.raises(ConfigError):
        tower_config_from_dict({**tower_config_to_dict(RADAR), **bad})


# --------------------------------------------------------------------------- forward


def test_forward_of_both_kinds():
    model = bound_model()
    assert model.modalities == ("vision", "text", "radar", "tactile")
    inputs = batch()
    out = embed(model, inputs)
    assert out["radar"].shape == (2, 32) and out["tactile"].shape == (2, 32)
    # L2-normalized, then scaled by the tower's fixed logit scale (1 / temperature).
    assert torch.allclose(out["radar"].norm(dim=-1), torch.full((2,), 5.0), atol=1e-4)
    assert torch.allclose(out["tactile"].norm(dim=-1), torch.full((2,), 10.0), atol=1e-4)
    # Items are embedded independently, and differently.
    single = embed(model, {"radar": inputs["radar"][:1]})["radar"]
    assert torch.allclose(single, out["radar"][:1], atol=1e-5)
    assert not torch.allclose(out["radar"][0], out["radar"][1])
    # A clip axis is averaged, as for the six.
    clips = torch.stack([inputs["radar"], inputs["radar"]], dim=1)  # (B, 2, C, T)
    assert torch.allclose(embed(model, {"radar": clips})["radar"], out["radar"], atol=1e-5)


def test_forward_rejects_wrong_input_shapes():
    model = bound_model()
    with pytest.raises(ModelInputError, match="radar"):
        embed(model, {"radar": torch.randn(2, 4, 200)})
    with pytest.raises(ModelInputError, match="tactile"):
        embed(model, {"tactile": torch.randn(2, 1, 48, 32)})


def test_bound_tower_trains_alone_against_a_frozen_base():
    model = bound_model()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("towers.radar."))
    model.train()
    loss = model({"radar": batch()["radar"]})["radar"].sum()
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith("towers.radar.") for n in grads)


def test_add_tower_refuses_a_taken_name():
    model = bound_model()
    with pytest.raises(ConfigError):
        model.add_tower(RADAR)
    with pytest.raises(ConfigError):
        ImageBindConfig.tiny().with_towers(RADAR, RADAR)


def test_tiny_towers_do_not_depend_on_which_others_are_built():
    full = load_imagebind("tiny")
    text_only = load_imagebind("tiny", modalities=["text"])
    for key, value in text_only.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key


# --------------------------------------------------------------------------- save / load


@pytest.fixture()
def saved(tmp_path):
    model = bound_model()
    info = {"radar": {"temperature": 0.2, "training": {"start_ns": 1, "end_ns": 2, "pairs": 9},
                      "metrics": {"val_r1": 0.5}}}
    out = save_bound_model(model, tmp_path / "radar-model", base="tiny", info=info,
                           manifest_extra={"trained_by": "test"})
    return model, out


def test_round_trip_through_a_directory(saved):
    model, out = saved
    loaded = load_imagebind(out)
    assert loaded.modalities == model.modalities
    assert not loaded.training
    assert loaded.config.tower("radar") == RADAR
    inputs = batch(seed=5)
    for name, value in embed(model, inputs).items():
        assert torch.equal(embed(loaded, inputs)[name], value), name
    # The named base was rebuilt from its preset, so its towers are the preset's.
    assert torch.equal(loaded.state_dict()["towers.text.head.proj.weight"],
                       load_imagebind("tiny").state_dict()["towers.text.head.proj.weight"])
    # A subset loads just those towers, with the same weights.
    part = load_imagebind(out, modalities=["radar"])
    assert part.modalities == ("radar",)
    assert torch.equal(embed(part, inputs)["radar"], embed(model, inputs)["radar"])


def test_manifest_records_what_the_model_is(saved):
    _, out = saved
    doc = read_manifest(out)
    assert doc["format"] == "streambind.model" and doc["embed_dim"] == 32
    assert doc["base"]["name"] == "tiny" and doc["base"]["modalities"] == ["vision", "text"]
    radar, tactile = doc["towers"]
    assert radar["modality"] == "radar" and radar["kind"] == "series"
    assert radar["input"]["shape"] == [3, 200] and radar["input"]["sample_rate_hz"] == 100.0
    assert radar["temperature"] == pytest.approx(0.2) and radar["logit_scale"] == pytest.approx(5)
    assert radar["training"]["pairs"] == 9 and radar["metrics"]["val_r1"] == 0.5
    assert tactile["temperature"] == pytest.approx(0.1)
    for entry in doc["towers"]:
        digest = hashlib.sha256((out / entry["weights"]).read_bytes()).hexdigest()
        assert entry["sha256"] == digest
    assert doc["extra"] == {"trained_by": "test"}
    assert set(bound_tower_configs(out)) == {"radar", "tactile"}
    assert bound_tower_configs("tiny") == {}


def test_checksum_mismatch_is_refused(saved):
    _, out = saved
    file = out / "tower.radar.pt"
    state = torch.load(file, weights_only=True)
    state["head.proj.weight"] = state["head.proj.weight"] + 1.0
    torch.save(state, file)  # same shapes, other numbers: only the digest tells
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_imagebind(out)
    # Towers whose files are intact still load.
    assert load_imagebind(out, modalities=["tactile"]).modalities == ("tactile",)


def _rewrite(out, edit):
    doc = json.loads((out / "manifest.json").read_text())
    edit(doc)
    (out / "manifest.json").write_text(json.dumps(doc))


def test_weights_of_the_wrong_shape_are_refused(saved):
    _, out = saved

    def more_channels(doc):
        doc["towers"][0]["config"]["channels"] = 4  # the weights were made for 3

    _rewrite(out, more_channels)
    with pytest.raises(CheckpointError, match="mismatched shapes"):
        load_imagebind(out)


def test_extra_or_missing_tensors_are_refused(saved):
    _, out = saved
    file = out / "tower.radar.pt"
    state = torch.load(file, weights_only=True)
    state["stem.extra"] = torch.zeros(1)
    del state["stem.cls_token"]
    torch.save(state, file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    _rewrite(out, lambda doc: doc["towers"][0].update(sha256=digest))
    with pytest.raises(CheckpointError, match="missing keys.*unexpected keys"):
        load_imagebind(out)


def test_pickled_objects_are_refused(saved):
    _, out = saved
    file = out / "tower.radar.pt"
    torch.save({"stem.proj.weight": torch.zeros(1), "x": ConfigError("boom")}, file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    _rewrite(out, lambda doc: doc["towers"][0].update(sha256=digest))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_imagebind(out)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["towers"][0].update(weights="../tower.radar.pt"), "file name"),
    (lambda d: d["towers"][0].update(logit_scale=20.0), "logit scale"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d["base"].update(name="gigantic"), "unknown base"),
    (lambda d: d["towers"][0].update(modality="sonar"), "disagrees"),
    (lambda d: d["base"]["config"].update(embed_dim=64), "embed_dim|preset"),
])
def test_inconsistent_manifests_are_refused(saved, edit, match):
    _, out = saved
    _rewrite(out, edit)
    with pytest.raises(CheckpointError, match=match):
        load_imagebind(out)


def test_retrained_base_weights_are_copied_in(tmp_path):
    model = bound_model()
    with torch.no_grad():
        model.towers["vision"].head.proj.weight.mul_(2.0)  # "trained": no longer the preset
    out = save_bound_model(model, tmp_path / "m", base="tiny", base_weights=True)
    doc = read_manifest(out)
    assert doc["base"]["weights"] == "base.pt" and doc["base"]["derived_from"] == "tiny"
    loaded = load_imagebind(out)
    inputs = batch(seed=2)
    assert torch.equal(embed(loaded, inputs)["vision"], embed(model, inputs)["vision"])
    (out / "base.pt").write_bytes((out / "base.pt").read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_imagebind(out)


def test_saving_replaces_a_model_directory_but_nothing_else(tmp_path):
    model = bound_model()
    out = save_bound_model(model, tmp_path / "m", base="tiny")
    save_bound_model(model, out, base="tiny")  # a rebuild replaces it whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a bound-model directory"):
        save_bound_model(model, other, base="tiny")
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="copied in"):
        save_bound_model(model, tmp_path / "x", base="my.pth", base_weights=False)


def test_world_model_source(tmp_path, caplog):
    assert not world_model_available(tmp_path)
    with pytest.raises(WorldModelMissingError, match="streambind world --train"):
        load_imagebind("world", cache_dir=tmp_path)
    model = bound_model()
    save_bound_model(model, world_model_dir(tmp_path), base="world")
    assert world_model_available(tmp_path)
    # saved without a recipe version, as world models before it were: not current
    assert world_model_recipe(tmp_path) == 1 and not world_model_current(tmp_path)
    with caplog.at_level("WARNING", logger="streambind.model.bound"):
        loaded = load_imagebind("world", cache_dir=tmp_path, dtype="bf16")
    assert "trained by another version" in caplog.text  # served, with a warning
    assert loaded.dtype == torch.bfloat16
    assert set(bound_tower_configs("world", cache_dir=tmp_path)) == {"radar", "tactile"}
    assert read_manifest(world_model_dir(tmp_path))["base"]["derived_from"] == "world"


def test_the_constructor_builds_extra_towers_in_the_same_loop():
    config = ImageBindConfig.tiny().with_towers(RADAR, TACTILE)
    assert config.modalities[-2:] == ("radar", "tactile")
    model = ImageBind(config, ["imu", "tactile", "radar"], seed=0)
    assert model.modalities == ("imu", "radar", "tactile")  # the six first, then extras
    again = ImageBind(config, ["radar"], seed=0)  # per-tower seeding: same radar weights
    assert torch.equal(again.state_dict()["towers.radar.stem.proj.weight"],
                       model.state_dict()["towers.radar.stem.proj.weight"])
    with pytest.raises(ConfigError, match="unknown modalities"):
        ImageBind(config, ["sonar"])
