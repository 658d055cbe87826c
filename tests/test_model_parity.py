"""Parity with the reference implementation and the official checkpoint layout.

The reference fixtures ship in tests/fixtures/imagebind/ (see its README): these tests fail,
never skip, when one is missing. The project's shared workspace keeps the originals; when it
is present next to the repository, the shipped copies must be byte-identical to them.
"""

import hashlib
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

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "imagebind"
PARITY = FIXTURES / "parity_tiny.pt"
HUGE_SHAPES = FIXTURES / "imagebind_huge_state_dict_shapes.json"
# Where the originals live: the shared workspace beside the repository (absent on a clone).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "imagebind"
FIXTURE_SHA256 = {
    "imagebind_huge_state_dict_shapes.json":
        "44ea00bd3a10d7ed129041f2f85ecadfbdbe9cfcb6c0ff1e25a9cf54664d516b",
    "parity_tiny.pt": "110257d928cccaf00d9d8bd446a1f8364c6e9fd4ffcbc4bf5a54a566d06432dd",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def parity():
    return torch.load(PARITY, weights_only=True)


@pytest.fixture(scope="module")
def reference_model(parity):
    return ImageBind.from_reference(parity["config"], parity["state_dict"])


@pytest.mark.parametrize("name", sorted(FIXTURE_SHA256))
def test_shipped_fixture_is_the_recorded_file(name):
    path = FIXTURES / name
    assert path.is_file(), f"{path} is missing: the parity fixtures ship with the repository"
    assert _sha256(path) == FIXTURE_SHA256[name]
    # The README states the same digest, so the documentation cannot drift from the file.
    assert FIXTURE_SHA256[name] in (FIXTURES / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(FIXTURE_SHA256))
def test_shipped_fixture_is_byte_identical_to_the_shared_original(name):
    original = SHARED / name
    if not original.is_file():
        pytest.skip("no shared workspace beside this clone to compare with")
    assert (FIXTURES / name).read_bytes() == original.read_bytes()


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
