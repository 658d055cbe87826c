"""Configuration of the ImageBind model: one frozen dataclass per tower plus the whole.

Every tower is a pre-norm ViT over a modality-specific stem. The fields that differ between
towers (stem geometry, the extra learned key/value token, the logit scale of the output) are
defaults of the tower's class, so a preset only states widths, depths and heads.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streambind.errors import ConfigError

logger = logging.getLogger(__name__)

#: Modality names, in the order of the reference model (and of its checkpoint).
MODEL_MODALITIES: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")


@dataclass(frozen=True)
class TowerConfig:
    """Fields shared by every tower. Subclasses add the stem geometry."""

    modality: ClassVar[str] = ""
    width: int = 768  # token dimension D of the transformer
    depth: int = 12  # number of transformer blocks
    heads: int = 12
    mlp_ratio: int = 4
    pre_norm: bool = False  # LayerNorm on the tokens before the first block (vision only)
    bias_kv: bool = True  # a learned key/value token appended to every attention (non-CLIP)
    drop_path: float = 0.0  # stochastic depth at the last block, linear from 0; training only
    head_dropout: float = 0.0  # dropout before the head projection; training only
    logit_scale: float | None = None  # initial output scale; None means no scaling
    learnable_logit_scale: bool = False

    def __post_init__(self) -> None:
        if self.width <= 0 or self.depth <= 0 or self.heads <= 0:
            raise ConfigError(f"{self.modality}: width, depth and heads must be positive")
        if self.width % self.heads:
            raise ConfigError(
                f"{self.modality}: width {self.width} is not divisible by heads {self.heads}"
            )


@dataclass(frozen=True)
class VisionConfig(TowerConfig):
    """Images and video clips: a 3-D convolution over (time, height, width) patches."""

    modality: ClassVar[str] = "vision"
    width: int = 1024
    depth: int = 24
    heads: int = 16
    pre_norm: bool = True
    bias_kv: bool = False
    image_size: int = 224
    frames: int = 2  # frames per clip; a still image is repeated to this many
    patch_size: tuple[int, int, int] = (2, 14, 14)  # (time, height, width), stride == kernel


@dataclass(frozen=True)
class TextConfig(TowerConfig):
    """CLIP text encoder: causal attention, pooled at the end-of-text token."""

    modality: ClassVar[str] = "text"
    bias_kv: bool = False
    context_length: int = 77
    vocab_size: int = 49408
    logit_scale: float | None = 1 / 0.07
    learnable_logit_scale: bool = True


@dataclass(frozen=True)
class AudioConfig(TowerConfig):
    """Log-mel spectrograms (1 x mel bins x frames), overlapping 2-D patches."""

    modality: ClassVar[str] = "audio"
    drop_path: float = 0.1
    num_mel_bins: int = 128
    target_len: int = 204
    kernel_size: int = 16
    stride: int = 10
    logit_scale: float | None = 20.0


@dataclass(frozen=True)
class DepthConfig(TowerConfig):
    """Single-channel disparity images, non-overlapping 2-D patches."""

    modality: ClassVar[str] = "depth"
    width: int = 384
    heads: int = 8
    image_size: int = 224
    kernel_size: int = 16
    logit_scale: float | None = 5.0
    # A fixed standardization (x - input_shift) / input_scale of the disparity input inside
    # the tower, before the patch convolution; the identity (ImageBind's tower) by default.
    # The stem's LayerNorm makes a patch token blind to the patch's level (a flat patch at
    # disparity 0.05 and one at 0.3 give the same token), and indoor depth is mostly flat
    # surfaces in a narrow disparity band: without a shift, a small tower trained from
    # scratch sees nearly the same tokens for every frame and does not bind at all.
    input_shift: float = 0.0
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.input_scale > 0:
            raise ConfigError(f"depth: input_scale must be positive, got {self.input_scale}")


@dataclass(frozen=True)
class ThermalConfig(TowerConfig):
    """Single-channel thermal images, non-overlapping 2-D patches."""

    modality: ClassVar[str] = "thermal"
    image_size: int = 224
    kernel_size: int = 16
    logit_scale: float | None = 10.0


@dataclass(frozen=True)
class ImuConfig(TowerConfig):
    """6-axis IMU (accelerometer + gyroscope), 2000 samples cut into windows of 8."""

    modality: ClassVar[str] = "imu"
    width: int = 512
    depth: int = 6
    heads: int = 8
    drop_path: float = 0.7
    head_dropout: float = 0.5
    channels: int = 6
    length: int = 2000
    kernel_size: int = 8
    logit_scale: float | None = 5.0


TOWER_CONFIGS: dict[str, type[TowerConfig]] = {
    cls.modality: cls
    for cls in (VisionConfig, TextConfig, AudioConfig, DepthConfig, ThermalConfig, ImuConfig)
}


@dataclass(frozen=True)
class ImageBindConfig:
    """The whole model: the joint embedding dimension and one config per tower."""

    embed_dim: int = 768  # dimension of the joint embedding space
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    imu: ImuConfig = field(default_factory=ImuConfig)
    # Towers bound to the space after the six (streambind.model.kinds), built in the same
    # loop; each is named by its config's ``modality``.
    extra: tuple[TowerConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.embed_dim <= 0:
            raise ConfigError("embed_dim must be positive")
        names = [t.modality for t in self.extra]
        clash = sorted({n for n in names if names.count(n) > 1 or n in MODEL_MODALITIES})
        if clash:
            raise ConfigError(f"extra towers with taken names: {', '.join(clash)}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every tower's name: the six in checkpoint order, then the extra towers."""
        return MODEL_MODALITIES + tuple(t.modality for t in self.extra)

    def tower(self, modality: str) -> TowerConfig:
        """The config of one tower, by modality name."""
        if modality in MODEL_MODALITIES:
            return getattr(self, modality)
        for cfg in self.extra:
            if cfg.modality == modality:
                return cfg
        raise ConfigError(f"unknown modality {modality!r}; expected one of {self.modalities}")

    def towers(self) -> dict[str, TowerConfig]:
        """All tower configs keyed by modality, in checkpoint order (extra towers last)."""
        return {m: self.tower(m) for m in self.modalities}

    def with_towers(self, *configs: TowerConfig) -> ImageBindConfig:
        """A copy with more extra towers (names must be new)."""
        return dataclasses.replace(self, extra=self.extra + tuple(configs))

    def base_dict(self) -> dict[str, Any]:
        """The six towers' config as JSON-ready data (extra towers are stored per tower)."""
        doc = dataclasses.asdict(self)
        doc.pop("extra")
        return doc

    @classmethod
    def from_base_dict(cls, doc: Mapping[str, Any]) -> ImageBindConfig:
        """Inverse of :meth:`base_dict`; ``ConfigError`` on unknown or malformed fields."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("embed_dim"), int):
            raise ConfigError("a model config needs an integer embed_dim")
        unknown = sorted(set(doc) - {"embed_dim", *MODEL_MODALITIES})
        if unknown:
            raise ConfigError(f"unknown model config fields: {', '.join(unknown)}")
        towers: dict[str, TowerConfig] = {}
        for m in MODEL_MODALITIES:
            fields = doc.get(m, {})
            tower_cls = TOWER_CONFIGS[m]
            known = {f.name for f in dataclasses.fields(tower_cls)}
            if not isinstance(fields, Mapping) or set(fields) - known:
                raise ConfigError(f"bad {m} tower config: {fields!r}")
            fields = dict(fields)
            if "patch_size" in fields:  # JSON has no tuples
                fields["patch_size"] = tuple(fields["patch_size"])
            try:
                towers[m] = tower_cls(**fields)
            except TypeError as exc:
                raise ConfigError(f"bad {m} tower config: {exc}") from exc
        return cls(embed_dim=doc["embed_dim"], **towers)  # type: ignore[arg-type]

    @classmethod
    def huge(cls) -> ImageBindConfig:
        """ImageBind-Huge, the released checkpoint (``imagebind_huge.pth``)."""
        return cls(
            embed_dim=1024,
            vision=VisionConfig(width=1280, depth=32, heads=16),
            text=TextConfig(width=1024, depth=24, heads=16),
            audio=AudioConfig(width=768, depth=12, heads=12),
            depth=DepthConfig(width=384, depth=12, heads=8),
            thermal=ThermalConfig(width=768, depth=12, heads=12),
            imu=ImuConfig(width=512, depth=6, heads=8),
        )

    @classmethod
    def tiny(cls) -> ImageBindConfig:
        """A tiny untrained model for tests and the offline demo (same as the parity fixture)."""
        return cls(
            embed_dim=32,
            vision=VisionConfig(width=64, depth=2, heads=4),
            text=TextConfig(width=64, depth=2, heads=4),
            audio=AudioConfig(width=64, depth=2, heads=4),
            depth=DepthConfig(width=32, depth=2, heads=4),
            thermal=ThermalConfig(width=64, depth=2, heads=4),
            imu=ImuConfig(width=32, depth=2, heads=4),
        )

    @classmethod
    def from_reference_kwargs(cls, kwargs: Mapping[str, Any]) -> ImageBindConfig:
        """Build a config from the keyword arguments of the reference ``ImageBindModel``.

        Arguments left out take the reference's defaults. ``imu_kernel_size`` is accepted but,
        as in the reference (which hard-codes windows of 8 samples), it must be 8.
        """
        kw = dict(kwargs)
        unknown = sorted(set(kw) - _REFERENCE_DEFAULTS.keys())
        if unknown:
            raise ConfigError(f"unknown ImageBindModel arguments: {', '.join(unknown)}")
        kw = {**_REFERENCE_DEFAULTS, **kw}
        if int(kw["imu_kernel_size"]) != 8:
            # The reference ignores this argument; honouring it would break parity.
            raise ConfigError("imu_kernel_size must be 8: the reference model ignores it")

        def common(m: str) -> dict[str, Any]:
            return {
                "width": int(kw[f"{m}_embed_dim"]),
                "depth": int(kw[f"{m}_num_blocks"]),
                "heads": int(kw[f"{m}_num_heads"]),
            }

        return cls(
            embed_dim=int(kw["out_embed_dim"]),
            vision=VisionConfig(
                **common("vision"),
                frames=int(kw["video_frames"]),
                patch_size=tuple(int(k) for k in kw["kernel_size"]),
            ),
            text=TextConfig(**common("text")),
            audio=AudioConfig(
                **common("audio"),
                drop_path=float(kw["audio_drop_path"]),
                num_mel_bins=int(kw["audio_num_mel_bins"]),
                target_len=int(kw["audio_target_len"]),
                kernel_size=int(kw["audio_kernel_size"]),
                stride=int(kw["audio_stride"]),
            ),
            depth=DepthConfig(
                **common("depth"),
                drop_path=float(kw["depth_drop_path"]),
                kernel_size=int(kw["depth_kernel_size"]),
            ),
            thermal=ThermalConfig(
                **common("thermal"),
                drop_path=float(kw["thermal_drop_path"]),
                kernel_size=int(kw["thermal_kernel_size"]),
            ),
            imu=ImuConfig(**common("imu"), drop_path=float(kw["imu_drop_path"])),
        )

    def replace(self, **changes: Any) -> ImageBindConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


# Defaults of the reference ImageBindModel constructor (facebookresearch/ImageBind).
_REFERENCE_DEFAULTS: dict[str, Any] = {
    "video_frames": 2,
    "kernel_size": (2, 14, 14),
    "audio_kernel_size": 16,
    "audio_stride": 10,
    "out_embed_dim": 768,
    "vision_embed_dim": 1024,
    "vision_num_blocks": 24,
    "vision_num_heads": 16,
    "audio_embed_dim": 768,
    "audio_num_blocks": 12,
    "audio_num_heads": 12,
    "audio_num_mel_bins": 128,
    "audio_target_len": 204,
    "audio_drop_path": 0.1,
    "text_embed_dim": 768,
    "text_num_blocks": 12,
    "text_num_heads": 12,
    "depth_embed_dim": 384,
    "depth_kernel_size": 16,
    "depth_num_blocks": 12,
    "depth_num_heads": 8,
    "depth_drop_path": 0.0,
    "thermal_embed_dim": 768,
    "thermal_kernel_size": 16,
    "thermal_num_blocks": 12,
    "thermal_num_heads": 12,
    "thermal_drop_path": 0.0,
    "imu_embed_dim": 512,
    "imu_kernel_size": 8,
    "imu_num_blocks": 6,
    "imu_num_heads": 8,
    "imu_drop_path": 0.7,
}
