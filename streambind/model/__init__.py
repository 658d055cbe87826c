"""ImageBind in PyTorch: six modality towers embedding into one joint space.

    >>> from streambind.model import load_imagebind, tokenize
    >>> model = load_imagebind("tiny")          # or "huge": the official checkpoint
    >>> emb = model({"text": tokenize(["a dog barking"])})["text"]  # (1, embed_dim)
"""

from streambind.model.cache import checkpoint_cache_path, huge_checkpoint_available
from streambind.model.checkpoint import load_imagebind, official_key_to_ours, ours_key_to_official
from streambind.model.config import MODEL_MODALITIES, ImageBindConfig
from streambind.model.imagebind import ImageBind
from streambind.model.tokenizer import tokenize
from streambind.model.towers import ModelInputError

__all__ = [
    "MODEL_MODALITIES",
    "ImageBind",
    "ImageBindConfig",
    "ModelInputError",
    "checkpoint_cache_path",
    "huge_checkpoint_available",
    "load_imagebind",
    "official_key_to_ours",
    "ours_key_to_official",
    "tokenize",
]
