"""Parity with the reference implementation and the official checkpoint layout."""

import json
from pathlib import Path

import pytest
import torch

from streambind.model import (
    ImageBind,
    ImageBindConfig,
    official_key_to_ours,
    ours_key_to_official,
    tokenize,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "imagebind"
PARITY = FIXTURES / "parity_tiny.pt"
HUGE_SHAPES = FIXTURES / "imagebind_huge_state_dict_shapes.json"


@pytest.fixture(scope="module")
def parity():
    if not PARITY.is_file():
        pytest.skip(f"reference fixture {PARITY.name} not found in {FIXTURES} (../shared absent)")
    return torch.load(PARITY, weights_only=True)


@pytest.fixture(scope="module")
def reference_model(parity):
    return ImageBind.from_reference(parity["config"], parity["state_dict"])


def rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest per-item relative error ||ours - ref|| / ||ref||."""
    return ((ours - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()


def test_every_output_matches_reference(parity, reference_model):
    inputs = dict(parity["inputs"])
    video = inputs.pop("video")
    with torch.no_grad():
        outputs = reference_model(inputs)
        outputs["video"] = reference_model({"vision": video})["vision"]
    assert set(outputs) == set(parity["outputs"])
    for name, expected in parity["outputs"].items():
        assert outputs[name].shape == expected.shape, name
        assert rel_error(outputs[name], expected) < 1e-4, name


def test_from_reference_returns_eval_model_with_checkpoint_weights(parity, reference_model):
    assert not reference_model.training
    sd = parity["state_dict"]
    ours = reference_model.state_dict()
    assert torch.equal(ours["towers.text.head.log_logit_scale"],
                       sd["modality_postprocessors.text.1.log_logit_scale"])
    assert torch.equal(ours["towers.imu.head.proj.weight"], sd["modality_heads.imu.3.weight"])


def test_tokenize_matches_reference_ids(parity):
    assert torch.equal(tokenize(parity["texts"]), parity["inputs"]["text"])


def test_tiny_preset_is_the_fixture_config(parity):
    assert ImageBindConfig.from_reference_kwargs(parity["config"]) == ImageBindConfig.tiny()


def test_subset_model_matches_reference_for_its_tower(parity):
    model = ImageBind.from_reference(parity["config"], parity["state_dict"], modalities=["imu"])
    assert list(model.towers) == ["imu"]
    with torch.no_grad():
        out = model({"imu": parity["inputs"]["imu"]})
    assert rel_error(out["imu"], parity["outputs"]["imu"]) < 1e-4


def test_huge_preset_matches_official_keys_and_shapes():
    if not HUGE_SHAPES.is_file():
        pytest.skip(f"{HUGE_SHAPES.name} not found in {FIXTURES} (../shared absent)")
    official = json.loads(HUGE_SHAPES.read_text())
    with torch.device("meta"):  # no memory for the 1.2B parameters
        model = ImageBind(ImageBindConfig.huge())
    ours = {ours_key_to_official(k): list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official
    assert sum(v.numel() for v in model.state_dict().values()) == 1_200_786_990
    # The forward mapping is the inverse of the one used above.
    assert all(ours_key_to_official(official_key_to_ours(k)) == k for k in official)


def test_reference_default_kwargs_are_the_default_config():
    assert ImageBindConfig.from_reference_kwargs({}) == ImageBindConfig()
    huge_kwargs = {
        "vision_embed_dim": 1280, "vision_num_blocks": 32, "vision_num_heads": 16,
        "text_embed_dim": 1024, "text_num_blocks": 24, "text_num_heads": 16,
        "out_embed_dim": 1024, "audio_drop_path": 0.1, "imu_drop_path": 0.7,
    }
    assert ImageBindConfig.from_reference_kwargs(huge_kwargs) == ImageBindConfig.huge()
    assert ImageBindConfig.huge().embed_dim == 1024
