"""Raw world windows to model inputs with the pipeline's own featurizers (imports torch).

The same transforms as at inference (:mod:`streambind.features`), so a model trained on
these tensors sees exactly what ``streambind run`` feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from streambind.errors import FeatureError
from streambind.world.render import RawWindow


def featurize(window: RawWindow) -> torch.Tensor:
    """One raw window -> its model input: vision (3, 2, 224, 224), audio (1, 128, 204),
    depth and thermal (1, 224, 224), IMU (6, 2000)."""
    from streambind.features.audio import audio_window
    from streambind.features.depth import depth_frame
    from streambind.features.imu import imu_window
    from streambind.features.thermal import thermal_frame
    from streambind.features.vision import vision_window

    m = window.modality
    if m == "vision":
        return vision_window(window.data)
    if m == "audio":
        return audio_window(window.data, float(window.sample_rate or 16_000))
    if m == "depth":
        return depth_frame(window.data, window.encoding)
    if m == "thermal":
        return thermal_frame(window.data, window.encoding)
    if m == "imu":
        return imu_window(window.data, float(window.sample_rate or 400))
    raise FeatureError(f"unknown modality {m!r}")


def featurize_batch(windows: Sequence[RawWindow]) -> torch.Tensor:
    """Windows of one modality -> a stacked batch (B, ...) of model inputs."""
    from streambind.features.audio import audio_windows
    from streambind.features.vision import vision_windows

    if not windows:
        raise FeatureError("featurize_batch: no windows")
    modality = windows[0].modality
    if any(w.modality != modality for w in windows):
        raise FeatureError("featurize_batch: windows of several modalities")
    if modality == "vision":
        return vision_windows([w.data for w in windows])
    rates = {w.sample_rate for w in windows}
    if modality == "audio" and len(rates) == 1 and len({w.data.shape for w in windows}) == 1:
        import numpy as np

        return audio_windows(np.stack([w.data for w in windows]), float(rates.pop() or 16_000))
    return torch.stack([featurize(w) for w in windows])
