"""The floating-point dtypes a model may run in, by the names configs and flags use."""

from __future__ import annotations

import torch

from streambind.errors import ConfigError

#: The one table of dtype names (flags, configs, manifests) -> torch dtypes.
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a name of :data:`DTYPES` (or a dtype, or ``None``, unchanged).

    Raises ``ConfigError`` for an unknown name.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """The :data:`DTYPES` name of a torch dtype (``torch.bfloat16`` -> ``"bf16"``)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ConfigError(f"no name for dtype {dtype}; expected one of {sorted(DTYPES)}")
