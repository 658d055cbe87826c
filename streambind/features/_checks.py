"""Input validation shared by the featurizers: every rejection is a typed ``FeatureError``."""

from __future__ import annotations

import numpy as np

from streambind.errors import FeatureError

# Reasons carried by FeatureError; the streaming core copies them to the dead-letter record.
BAD_SHAPE = "bad_shape"
NON_FINITE = "non_finite"
DECODE_ERROR = "decode_error"
TOO_SHORT = "too_short"
BAD_ENCODING = "bad_encoding"


def as_array(value: object, what: str) -> np.ndarray:
    """Return ``value`` as a numpy array (tensors included) or raise ``bad_shape``."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists land here
        raise FeatureError(f"{what}: not an array ({exc})", BAD_SHAPE) from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise FeatureError(f"{what}: expected numbers, got dtype {arr.dtype}", BAD_SHAPE)
    return arr


def require_finite(arr: np.ndarray, what: str) -> None:
    """Raise ``non_finite`` when a float array holds NaN or infinity."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FeatureError(f"{what}: contains NaN or infinite values", NON_FINITE)


def require_rate(sample_rate: float, what: str) -> float:
    """Validate a sample rate: a positive finite number."""
    try:
        rate = float(sample_rate)
    except (TypeError, ValueError) as exc:
        raise FeatureError(f"{what}: sample rate {sample_rate!r} is not a number") from exc
    if not np.isfinite(rate) or rate <= 0:
        raise FeatureError(f"{what}: sample rate must be positive, got {sample_rate!r}")
    return rate
