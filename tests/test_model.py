"""Forward semantics of the model: clip axes, subsets, dtypes, attention paths, errors."""

import math

import pytest
import torch

from streambind.errors import ConfigError, StreambindError
from streambind.model import (
    MODEL_MODALITIES,
    ImageBind,
    ImageBindConfig,
    ModelInputError,
    load_imagebind,
    tokenize,
)
from streambind.model.config import VisionConfig
from streambind.model.layers import set_attention_impl


@pytest.fixture(scope="module")
def tiny():
    return load_imagebind("tiny")


def sample_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "vision": torch.randn(batch, 3, 224, 224, generator=g),
        "text": tokenize(["a dog barking", "glass breaking in a quiet kitchen"][:batch]),
        "audio": torch.randn(batch, 1, 128, 204, generator=g),
        "depth": torch.randn(batch, 1, 224, 224, generator=g),
        "thermal": torch.randn(batch, 1, 224, 224, generator=g),
        "imu": torch.randn(batch, 6, 2000, generator=g),
    }


@pytest.fixture(scope="module")
def inputs():
    return sample_inputs()


@pytest.fixture(scope="module")
def outputs(tiny, inputs):
    with torch.no_grad():
        return tiny(inputs)


def test_outputs_have_joint_dim_and_logit_scale_norms(tiny, outputs):
    assert tiny.embed_dim == tiny.config.embed_dim == 32
    expected_norm = {"vision": 1.0, "text": 1 / 0.07, "audio": 20.0, "depth": 5.0,
                     "thermal": 10.0, "imu": 5.0}
    assert set(outputs) == set(MODEL_MODALITIES)
    for name, emb in outputs.items():
        assert emb.shape == (2, 32) and emb.dtype == torch.float32, name
        torch.testing.assert_close(emb.norm(dim=-1), torch.full((2,), expected_norm[name]))


def test_any_subset_of_keys(tiny, inputs, outputs):
    with torch.no_grad():
        out = tiny({"imu": inputs["imu"], "text": inputs["text"], "audio": None})
    assert set(out) == {"imu", "text"}
    torch.testing.assert_close(out["imu"], outputs["imu"])
    assert tiny({}) == {}


def test_tiny_is_deterministic_and_leaves_global_rng_alone(tiny):
    state = torch.random.get_rng_state()
    again = load_imagebind("tiny")
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, a), b in zip(tiny.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_image_is_a_clip_of_a_repeated_frame(tiny, inputs, outputs):
    clip = inputs["vision"].unsqueeze(2).repeat(1, 1, 2, 1, 1)  # (B, 3, 2, H, W)
    with torch.no_grad():
        out = tiny({"vision": clip})["vision"]
    torch.testing.assert_close(out, outputs["vision"])


def test_video_clip_axis_is_averaged(tiny):
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(2, 3, 3, 2, 224, 224, generator=g)  # (B, S, 3, T, H, W)
    with torch.no_grad():
        averaged = tiny({"vision": clips})["vision"]
        per_clip = torch.stack([tiny({"vision": clips[:, s]})["vision"] for s in range(3)], 1)
    assert averaged.shape == (2, 32)
    torch.testing.assert_close(averaged, per_clip.mean(dim=1))
    # A 5-dim tensor is one clip per item, not clips of images.
    assert not torch.allclose(per_clip[:, 0], per_clip[:, 1])


def test_audio_clip_axis_is_averaged(tiny, inputs, outputs):
    clips = torch.stack([inputs["audio"], inputs["audio"].flip(-1)], dim=1)  # (B, 2, 1, F, T)
    with torch.no_grad():
        flipped = tiny({"audio": clips[:, 1]})["audio"]
        averaged = tiny({"audio": clips})["audio"]
    torch.testing.assert_close(averaged, (outputs["audio"] + flipped) / 2)


def test_text_embedding_is_taken_at_end_of_text(tiny, inputs, outputs):
    text = inputs["text"].clone()
    text[0, 10:] = 1234  # after the end-of-text token: invisible through the causal mask
    with torch.no_grad():
        out = tiny({"text": text})["text"]
    torch.testing.assert_close(out, outputs["text"])
    text[0, 2] = 1234  # before it: changes the embedding
    with torch.no_grad():
        assert not torch.allclose(tiny({"text": text})["text"][0], outputs["text"][0])


def test_math_attention_equals_sdpa(inputs, outputs):
    model = load_imagebind("tiny")
    set_attention_impl(model, "math")
    with torch.no_grad():
        out = model(inputs)
    for name in MODEL_MODALITIES:
        torch.testing.assert_close(out[name], outputs[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        set_attention_impl(model, "flash")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward(inputs, outputs, dtype):
    model = load_imagebind("tiny", dtype=dtype)
    assert model.dtype == dtype
    with torch.no_grad():
        out = model(inputs)  # float32 inputs are cast inside
    for name in MODEL_MODALITIES:
        assert out[name].dtype == torch.float32 and torch.isfinite(out[name]).all(), name
        cos = torch.nn.functional.cosine_similarity(out[name], outputs[name], dim=-1)
        assert cos.min() > 0.99, (name, cos)


def test_subset_model_builds_only_those_towers():
    imu_only = load_imagebind("tiny", modalities=("imu",))
    assert imu_only.modalities == ("imu",)
    assert all(k.startswith("towers.imu.") for k in imu_only.state_dict())
    with pytest.raises(ModelInputError, match="no 'text' tower"):
        imu_only({"text": tokenize(["x"])})
    with pytest.raises(ConfigError):
        ImageBind(ImageBindConfig.tiny(), modalities=["smell"])


@pytest.mark.parametrize(
    "name, shape",
    [("vision", (2, 3, 112, 112)), ("audio", (2, 1, 128, 100)), ("imu", (2, 3, 2000)),
     ("depth", (2, 224, 224)), ("thermal", (1, 2, 3, 4, 5, 6, 7))],
)
def test_wrong_shapes_raise_typed_errors(tiny, name, shape):
    with pytest.raises(ModelInputError, match=name) as info:
        tiny({name: torch.zeros(shape)})
    assert isinstance(info.value, StreambindError)


def test_text_requires_token_ids(tiny):
    with pytest.raises(ModelInputError, match="integer"):
        tiny({"text": torch.zeros(1, 77)})


def test_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        VisionConfig(width=30, depth=1, heads=4)
    with pytest.raises(ConfigError, match="unknown"):
        ImageBindConfig.from_reference_kwargs({"vision_width": 3})
    with pytest.raises(ConfigError, match="imu_kernel_size"):
        ImageBindConfig.from_reference_kwargs({"imu_kernel_size": 4})


def test_training_mode_uses_drop_path_and_dropout():
    model = load_imagebind("tiny", modalities=["imu"]).train()
    x = torch.randn(4, 6, 2000)
    torch.manual_seed(0)
    a = model({"imu": x})["imu"]
    b = model({"imu": x})["imu"]
    assert not torch.allclose(a, b)  # stochastic (IMU: drop path 0.7, head dropout 0.5)
    a.sum().backward()
    assert model.towers["imu"].stem.proj.weight.grad is not None
    assert math.isclose(model.eval()({"imu": x})["imu"].norm(dim=-1)[0].item(), 5.0,
                        rel_tol=1e-5)
