"""Towers for sensor kinds beyond the six: ``series`` and ``frame`` (DESIGN "new sensors").

A bound tower is named by the user (``[a-z][a-z0-9_]*``, not one of the six, not
``fused``) and carries its own input spec, so a checkpoint says what its windows are:

- :class:`SeriesConfig`: a multichannel time series resampled to ``sample_rate_hz`` and cut
  into windows of ``window_s``; input (channels, samples), cut into patches of
  ``patch_samples`` samples x all channels (a 1-D patch transformer, like the IMU tower).
- :class:`FrameConfig`: one single-channel frame per window of ``window_s``; input
  (1, height_px, width_px), non-overlapping ``patch_px`` patches (a ViT, like depth/thermal).

Both are :class:`~streambind.model.config.TowerConfig` subclasses, so the model builds them
in the same loop as the six (``ImageBindConfig.extra``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from streambind.errors import ConfigError
from streambind.model.config import MODEL_MODALITIES, TowerConfig

#: What a user may call a new sensor (it becomes the topic ``sensors.<name>``).
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
#: Names a bound tower may not take: the six towers and the fused pseudo-modality of events.
RESERVED_NAMES = frozenset(MODEL_MODALITIES) | {"fused"}
MAX_NAME_LEN = 64


def check_modality_name(name: object) -> str:
    """``name`` if it may name a bound tower, else ``ConfigError`` saying why."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > MAX_NAME_LEN:
        raise ConfigError(
            f"a new sensor's name must match [a-z][a-z0-9_]* (at most {MAX_NAME_LEN} "
            f"characters), got {name!r}"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"{name!r} is taken: a new sensor's name may not be one of "
                          f"{sorted(RESERVED_NAMES)}")
    return name


@dataclass(frozen=True)
class BoundTowerConfig(TowerConfig, ABC):
    """Fields of every bound tower: its name and its window length."""

    kind: ClassVar[str] = ""
    name: str = ""
    window_s: float = 2.0  # event-time window the tower embeds
    logit_scale: float | None = 5.0  # 1 / temperature; bind sets it from its temperature

    @property
    def modality(self) -> str:  # type: ignore[override]
        """The tower's modality name (the user's name for the sensor)."""
        return self.name

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window's model input, batch axis excluded."""

    def __post_init__(self) -> None:
        check_modality_name(self.name)
        super().__post_init__()
        if not (isinstance(self.window_s, int | float) and math.isfinite(self.window_s)
                and self.window_s > 0):
            raise ConfigError(f"{self.name}: window_s must be a positive number of seconds")
        if self.logit_scale is not None and not (0 < self.logit_scale <= 100):
            raise ConfigError(f"{self.name}: logit_scale must be in (0, 100]")
        if self.learnable_logit_scale:
            raise ConfigError(f"{self.name}: a bound tower's temperature is fixed (paper)")

    def input_spec(self) -> dict[str, Any]:
        """What a window of this tower is, for manifests and for the featurizer."""
        return {"kind": self.kind, "window_s": self.window_s, "shape": list(self.input_shape)}


@dataclass(frozen=True)
class SeriesConfig(BoundTowerConfig):
    """A multichannel time series: (channels, samples) at a fixed rate, 1-D patches."""

    kind: ClassVar[str] = "series"
    width: int = 512
    depth: int = 6
    heads: int = 8
    channels: int = 6
    sample_rate_hz: float = 400.0
    window_s: float = 5.0
    patch_samples: int = 8

    @property
    def samples(self) -> int:
        """Samples per window: ``sample_rate_hz * window_s``."""
        return round(self.sample_rate_hz * self.window_s)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.channels, self.samples)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.channels <= 1024:
            raise ConfigError(f"{self.name}: channels must be in 1..1024")
        if not (math.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0):
            raise ConfigError(f"{self.name}: sample_rate_hz must be positive")
        exact = self.sample_rate_hz * self.window_s
        if abs(exact - self.samples) > 1e-6 * max(1.0, exact) or self.samples < 1:
            raise ConfigError(
                f"{self.name}: sample_rate_hz x window_s = {exact:g} is not a whole number "
                "of samples"
            )
        if self.patch_samples < 1 or self.samples % self.patch_samples:
            raise ConfigError(
                f"{self.name}: {self.samples} samples per window are not a multiple of "
                f"patch_samples {self.patch_samples}"
            )

    def input_spec(self) -> dict[str, Any]:
        return {**super().input_spec(), "sample_rate_hz": self.sample_rate_hz,
                "channels": self.channels}


@dataclass(frozen=True)
class FrameConfig(BoundTowerConfig):
    """Single-channel frames: one (1, height_px, width_px) frame per window, 2-D patches."""

    kind: ClassVar[str] = "frame"
    width: int = 384
    depth: int = 12
    heads: int = 8
    height_px: int = 224
    width_px: int = 224
    patch_px: int = 16

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.height_px, self.width_px)

    def __post_init__(self) -> None:
        super().__post_init__()
        for side in (self.height_px, self.width_px):
            if not 0 < side <= 4096:
                raise ConfigError(f"{self.name}: frame sides must be in 1..4096 pixels")
        if self.patch_px < 1 or self.height_px % self.patch_px or self.width_px % self.patch_px:
            raise ConfigError(
                f"{self.name}: a {self.height_px}x{self.width_px} frame is not a whole number "
                f"of {self.patch_px}-pixel patches"
            )


TOWER_KINDS: dict[str, type[BoundTowerConfig]] = {
    cls.kind: cls for cls in (SeriesConfig, FrameConfig)
}


def tower_config_to_dict(cfg: BoundTowerConfig) -> dict[str, Any]:
    """A JSON-ready dict of a bound tower's config (``kind`` plus every field)."""
    return {"kind": cfg.kind, **dataclasses.asdict(cfg)}


def tower_config_from_dict(doc: Mapping[str, Any]) -> BoundTowerConfig:
    """Inverse of :func:`tower_config_to_dict`; ``ConfigError`` on an unknown kind or field,
    or on values the config rejects."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"a tower config must be an object, got {type(doc).__name__}")
    fields = dict(doc)
    kind = fields.pop("kind", None)
    if kind not in TOWER_KINDS:
        raise ConfigError(f"unknown tower kind {kind!r}; expected one of {sorted(TOWER_KINDS)}")
    cls = TOWER_KINDS[kind]
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known.keys())
    if unknown:
        raise ConfigError(f"unknown fields for a {kind} tower: {', '.join(unknown)}")
    for key, value in fields.items():
        _check_type(kind, key, value, known[key].default)
    try:
        return cls(**fields)
    except TypeError as exc:  # a value of the wrong type deep in a comparison
        raise ConfigError(f"bad {kind} tower config: {exc}") from exc


def _check_type(kind: str, key: str, value: object, default: object) -> None:
    # JSON has one number type and booleans are ints in Python: check what each field needs.
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float) or default is None:  # logit_scale: a number or None
        ok = (value is None and default is None) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        )
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{kind} tower field {key}: bad value {value!r}")
