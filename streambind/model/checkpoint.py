"""Loading ImageBind: presets, official checkpoints (file or cached download), state dicts.

The key mapping and strict loading of the official layout live in
:mod:`streambind.model.keys` (re-exported here for existing callers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from streambind.errors import CheckpointError, ConfigError
from streambind.model.bound import load_bound_model, resolve_model_dir
from streambind.model.cache import HUGE_URL, ensure_huge_checkpoint
from streambind.model.config import ImageBindConfig
from streambind.model.dtypes import DTYPES, resolve_dtype
from streambind.model.imagebind import ImageBind
from streambind.model.keys import (
    load_official_state_dict,
    official_key_to_ours,
    ours_key_to_official,
)

logger = logging.getLogger(__name__)

TINY_SEED = 0  # the untrained tiny model is the same on every machine

__all__ = [
    "DTYPES",
    "TINY_SEED",
    "UNTRAINED_PRESETS",
    "load_imagebind",
    "load_official_state_dict",
    "official_key_to_ours",
    "ours_key_to_official",
    "read_checkpoint",
]

def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a ``.pth`` file, safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        try:  # memory-map zip checkpoints: 4.8 GB is not read into RAM twice
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


UNTRAINED_PRESETS = {"tiny": ImageBindConfig.tiny, "huge-untrained": ImageBindConfig.huge}


def load_imagebind(
    source: str | os.PathLike[str] | Mapping[str, Tensor] = "huge",
    *,
    config: ImageBindConfig | None = None,
    modalities: Iterable[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    expected_sha256: str | None = None,
    url: str = HUGE_URL,
    download: bool = True,
    progress: bool = True,
) -> ImageBind:
    """Load ImageBind in eval mode.

    ``source``:

    - ``"huge"``: the official checkpoint, downloaded once from ``url`` into ``cache_dir``
      (default :func:`streambind.model.cache.default_cache_dir`) with a progress bar; see
      :func:`streambind.model.cache.ensure_huge_checkpoint` for how its SHA-256 is checked.
    - ``"tiny"``: the untrained tiny preset, initialised with a fixed seed (deterministic,
      without touching the global RNG). For tests and the offline demo.
    - ``"huge-untrained"``: the huge architecture initialised the same way: the official
      model's cost without its weights, for benchmarks on machines that lack them.
    - ``"world"``: the world model, trained on the synthetic world by
      ``streambind world --train`` and cached in ``<cache_dir>/world/``;
      :class:`~streambind.model.bound.WorldModelMissingError` says how to build it.
    - a bound-model directory (:mod:`streambind.model.bound`, written by
      ``streambind bind``): its base plus its bound towers, every file checked against the
      manifest's SHA-256. Its config comes from the manifest (``config`` must be None).
    - a path to an official-layout ``.pth`` file, or such a state dict.

    ``config`` defaults to the huge preset for checkpoints (the tiny one for ``"tiny"``).
    ``modalities`` builds and loads only those towers (strictly). ``dtype`` may be a torch
    dtype or ``"fp32"``/``"bf16"``/``"fp16"``.
    """
    dtype = resolve_dtype(dtype)
    model_dir = None if isinstance(source, Mapping) else resolve_model_dir(source, cache_dir)
    if model_dir is not None:
        if config is not None:
            raise ConfigError(f"{model_dir} is a model directory: its manifest gives the config")

        def named_base(name: str, towers: list[str], base_config: ImageBindConfig):
            if name == "huge":
                path = ensure_huge_checkpoint(cache_dir, url=url, download=download,
                                              expected_sha256=expected_sha256,
                                              progress=progress)
                expected_config = ImageBindConfig.huge()
            else:
                expected_config = UNTRAINED_PRESETS[name]()
            if base_config != expected_config:
                raise CheckpointError(
                    f"{model_dir}: the manifest's base config is not the {name!r} preset's"
                )
            if name == "huge":
                return read_checkpoint(path)
            return _untrained(name, None, towers).state_dict()

        model = load_bound_model(model_dir, modalities=modalities, load_named_base=named_base)
    elif isinstance(source, str) and source in UNTRAINED_PRESETS:
        model = _untrained(source, config, modalities)
    else:
        if isinstance(source, Mapping):
            state_dict = source
        elif isinstance(source, str) and source == "huge":
            path = ensure_huge_checkpoint(
                cache_dir, url=url, expected_sha256=expected_sha256, download=download,
                progress=progress,
            )
            state_dict = read_checkpoint(path)
        else:
            state_dict = read_checkpoint(source)
        # Built on the meta device: no time or memory is spent on random initialisation.
        with torch.device("meta"):
            model = ImageBind(config or ImageBindConfig.huge(), modalities)
        load_official_state_dict(model, state_dict)
    return model.to(device=device, dtype=dtype).eval()


def _untrained(
    name: str, config: ImageBindConfig | None, modalities: Iterable[str] | None
) -> ImageBind:
    # The same weights on every machine, and per tower whichever towers are built.
    return ImageBind(config or UNTRAINED_PRESETS[name](), modalities, seed=TINY_SEED)
