"""The ImageBind model: one tower per modality, all projecting into one joint space."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from streambind.errors import ConfigError
from streambind.model.config import ImageBindConfig, TowerConfig
from streambind.model.keys import load_official_state_dict
from streambind.model.towers import ModelInputError, Tower

logger = logging.getLogger(__name__)


def _normalize_modalities(
    modalities: Iterable[str] | None, available: tuple[str, ...]
) -> tuple[str, ...]:
    if modalities is None:
        return available
    if isinstance(modalities, str):
        modalities = (modalities,)
    wanted = set(modalities)
    unknown = sorted(wanted - set(available))
    if unknown:
        raise ConfigError(f"unknown modalities {unknown}; expected some of {available}")
    if not wanted:
        raise ConfigError("at least one modality is needed")
    return tuple(m for m in available if m in wanted)  # checkpoint order, extra towers last


def _new_tower(cfg: TowerConfig, embed_dim: int, seed: int | None) -> Tower:
    """A freshly initialised tower; with ``seed``, its weights depend only on the seed and
    the tower's name (not on which other towers are built), without touching the global
    RNG, so a model built with a subset of towers has the same weights for them."""
    if seed is None:
        tower = Tower(cfg, embed_dim)
        tower.init_weights()
        return tower
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + zlib.crc32(cfg.modality.encode()))
        tower = Tower(cfg, embed_dim)
        tower.init_weights()
    return tower


class ImageBind(nn.Module):
    """ImageBind (Girdhar et al., CVPR 2023) with the towers of ``modalities`` (default all).

    Building only some towers (e.g. ``modalities=("imu",)`` for an IMU-only replica) saves
    their memory; the checkpoint loaders then load just those towers' weights, strictly.
    Towers bound later (``config.extra``, :mod:`streambind.model.kinds`) are built by the
    same loop; :meth:`add_tower` adds one to a built model.
    """

    def __init__(
        self,
        config: ImageBindConfig,
        modalities: Iterable[str] | None = None,
        *,
        seed: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.modalities = _normalize_modalities(modalities, config.modalities)
        # The manifest of the bound-model directory this was loaded from, if any.
        self.manifest: dict[str, Any] | None = None
        self.towers = nn.ModuleDict()
        for m in self.modalities:
            self.towers[m] = _new_tower(config.tower(m), config.embed_dim, seed)

    def add_tower(
        self, cfg: TowerConfig, tower: Tower | None = None, *, seed: int | None = None
    ) -> Tower:
        """Add a tower for a new modality (e.g. a bound ``SeriesConfig``) and return it.

        ``tower`` is a tower already built for ``cfg`` (e.g. trained on its own); otherwise a
        new one is initialised, from ``seed`` if given (as the constructor's), on
        the device and in the dtype of the model's other weights.
        """
        config = self.config.with_towers(cfg)  # rejects a name already taken
        if tower is None:
            tower = _new_tower(cfg, config.embed_dim, seed)
            tower = tower.to(device=self.device, dtype=self.dtype)
        elif tower.modality != cfg.modality or tower.head.proj.out_features != self.embed_dim:
            raise ConfigError(
                f"the tower given for {cfg.modality!r} was built for {tower.modality!r} "
                f"with embed_dim {tower.head.proj.out_features}, not {self.embed_dim}"
            )
        self.config = config
        self.modalities = (*self.modalities, cfg.modality)
        self.towers[cfg.modality] = tower
        return tower.train(self.training)

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
        - a bound tower: (B, *its config's ``input_shape``), or with a clip axis.

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
