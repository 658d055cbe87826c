"""The ImageBind model: one tower per modality, all projecting into one joint space."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from streambind.errors import ConfigError
from streambind.model.config import MODEL_MODALITIES, ImageBindConfig
from streambind.model.keys import load_official_state_dict
from streambind.model.towers import ModelInputError, Tower

logger = logging.getLogger(__name__)


def _normalize_modalities(modalities: Iterable[str] | None) -> tuple[str, ...]:
    if modalities is None:
        return MODEL_MODALITIES
    if isinstance(modalities, str):
        modalities = (modalities,)
    wanted = set(modalities)
    unknown = sorted(wanted - set(MODEL_MODALITIES))
    if unknown:
        raise ConfigError(f"unknown modalities {unknown}; expected some of {MODEL_MODALITIES}")
    if not wanted:
        raise ConfigError("at least one modality is needed")
    return tuple(m for m in MODEL_MODALITIES if m in wanted)  # checkpoint order


class ImageBind(nn.Module):
    """ImageBind (Girdhar et al., CVPR 2023) with the towers of ``modalities`` (default all).

    Building only some towers (e.g. ``modalities=("imu",)`` for an IMU-only replica) saves
    their memory; the checkpoint loaders then load just those towers' weights, strictly.
    """

    def __init__(self, config: ImageBindConfig, modalities: Iterable[str] | None = None):
        super().__init__()
        self.config = config
        self.modalities = _normalize_modalities(modalities)
        self.towers = nn.ModuleDict()
        for m in self.modalities:
            self.towers[m] = Tower(config.tower(m), config.embed_dim)
        for tower in self.towers.values():
            tower.init_weights()

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding space."""
        return self.config.embed_dim

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the weights (inputs are cast to it)."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, inputs: Mapping[str, Tensor | None]) -> dict[str, Tensor]:
        """Embed each modality present in ``inputs``; keys absent or ``None`` are skipped.

        Keys are modality names; values are batches, cast to the model's device and dtype:

        - ``vision``: (B, 3, 224, 224) images; (B, 3, T, 224, 224) is **one video clip per
          item** (the reference would mistake a 5-dim tensor for a batch of clips and fail);
          (B, S, 3, T, 224, 224) is S clips per item, embedded and averaged.
        - ``text``: (B, 77) token ids from :func:`streambind.model.tokenize`.
        - ``audio``: (B, 1, 128, 204) log-mel spectrograms, or (B, S, 1, 128, 204) clips.
        - ``depth``, ``thermal``: (B, 1, 224, 224), or (B, S, 1, 224, 224) clips.
        - ``imu``: (B, 6, 2000), or (B, S, 6, 2000) clips.

        Returns float32 (B, E) embeddings per modality, exactly as the reference: L2
        normalized, then multiplied by the modality's logit scale (vision: none; text:
        learned; audio 20, depth 5, thermal 10, imu 5), then averaged over clips if any.
        """
        outputs: dict[str, Tensor] = {}
        for modality, value in inputs.items():
            if value is None:
                continue
            if modality not in self.towers:
                built = ", ".join(self.modalities)
                raise ModelInputError(
                    f"no {modality!r} tower in this model (built: {built})"
                )
            outputs[modality] = self.towers[modality](value)
        return outputs

    @classmethod
    def from_reference(
        cls,
        kwargs: Mapping[str, Any],
        state_dict: Mapping[str, Tensor],
        modalities: Iterable[str] | None = None,
    ) -> ImageBind:
        """Build from the reference constructor's kwargs and an official-layout state dict.

        Returns the model in eval mode; loading is strict for the built towers.
        """
        config = ImageBindConfig.from_reference_kwargs(kwargs)
        with torch.device("meta"):
            model = cls(config, modalities)
        load_official_state_dict(model, state_dict)
        return model.eval()
