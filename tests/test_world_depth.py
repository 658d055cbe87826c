"""The world preset's depth tower sees a patch's disparity level (its input standardization).

The depth stem's LayerNorm after a bias-free patch convolution is blind to a patch's level:
ImageBind's tower maps a flat wall at 0.05 and one at 0.3 (DepthNorm'd disparity) to the
same tokens. The world's rooms put every depth frame in that narrow band, and without the
world preset's fixed shift the depth tower bound at chance (every frame one embedding).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from streambind.errors import ConfigError
from streambind.model import ImageBind, ImageBindConfig
from streambind.model.config import DepthConfig
from streambind.world.train import world_config


def _flat_embeddings(cfg: ImageBindConfig) -> torch.Tensor:
    torch.manual_seed(0)
    tower = ImageBind(cfg).towers["depth"].eval()
    x = torch.stack([torch.full((1, 224, 224), v) for v in (0.05, 0.15, 0.3)])  # (3, 1, H, W)
    with torch.no_grad():
        return torch.nn.functional.normalize(tower(x), dim=-1)  # (3, E)


def test_world_depth_tower_tells_disparity_levels_apart() -> None:
    cfg = world_config()
    identity = dataclasses.replace(cfg, depth=dataclasses.replace(
        cfg.depth, input_shift=0.0, input_scale=1.0))
    same = _flat_embeddings(identity)
    apart = _flat_embeddings(cfg)
    # The reference tower: flat frames at different levels embed (nearly) identically.
    assert (same @ same.T).min() > 0.999
    # The world preset's standardized input: they do not.
    assert (apart @ apart.T).min() < 0.9


def test_depth_input_standardization_defaults_to_the_reference_and_round_trips() -> None:
    assert DepthConfig().input_shift == 0.0 and DepthConfig().input_scale == 1.0
    cfg = world_config()
    back = ImageBindConfig.from_base_dict(cfg.base_dict())
    assert back.depth == cfg.depth and back.depth.input_shift != 0.0
    with pytest.raises(ConfigError):
        DepthConfig(input_scale=0.0)
