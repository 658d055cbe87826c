"""ImageBind in PyTorch: six modality towers embedding into one joint space, plus towers
bound to it later (``series`` and ``frame`` sensor kinds).

    >>> from streambind.model import load_imagebind, tokenize
    >>> model = load_imagebind("tiny")          # or "huge": the official checkpoint
    >>> emb = model({"text": tokenize(["a dog barking"])})["text"]  # (1, embed_dim)

``load_imagebind`` also takes ``"world"`` (the world model) and bound-model directories
(:mod:`streambind.model.bound`).
"""

from streambind.model.bound import (
    TowerInfo,
    WorldModelMissingError,
    bound_tower_configs,
    read_manifest,
)
from streambind.model.bound_write import save_bound_model
from streambind.model.cache import (
    checkpoint_cache_path,
    huge_checkpoint_available,
    world_model_available,
    world_model_current,
    world_model_dir,
    world_model_recipe,
)
from streambind.model.checkpoint import load_imagebind, official_key_to_ours, ours_key_to_official
from streambind.model.config import MODEL_MODALITIES, ImageBindConfig
from streambind.model.dtypes import DTYPES
from streambind.model.imagebind import ImageBind
from streambind.model.kinds import FrameConfig, SeriesConfig, check_modality_name
from streambind.model.tokenizer import tokenize
from streambind.model.towers import ModelInputError

__all__ = [
    "DTYPES",
    "MODEL_MODALITIES",
    "FrameConfig",
    "ImageBind",
    "ImageBindConfig",
    "ModelInputError",
    "SeriesConfig",
    "TowerInfo",
    "WorldModelMissingError",
    "bound_tower_configs",
    "check_modality_name",
    "checkpoint_cache_path",
    "huge_checkpoint_available",
    "load_imagebind",
    "official_key_to_ours",
    "ours_key_to_official",
    "read_manifest",
    "save_bound_model",
    "tokenize",
    "world_model_available",
    "world_model_current",
    "world_model_dir",
    "world_model_recipe",
]
