"""Pure featurizers: raw sensor arrays in, ImageBind-shaped tensors out.

No file reads, no Kafka, no device moves. Every rejection is a
:class:`streambind.errors.FeatureError` whose ``reason`` is the dead-letter code
(``bad_shape``, ``non_finite``, ``decode_error``, ``too_short``, ``bad_encoding``).
"""

from .audio import audio_window, audio_windows, decode_pcm, kaldi_fbank, to_mono
from .decode import decode_frame
from .depth import DepthParams, depth_frame, depth_frames
from .imu import imu_rows, imu_window, imu_windows
from .thermal import thermal_frame, thermal_frames
from .vision import vision_frame, vision_window, vision_windows

__all__ = [
    "DepthParams",
    "audio_window",
    "audio_windows",
    "decode_frame",
    "decode_pcm",
    "depth_frame",
    "depth_frames",
    "imu_rows",
    "imu_window",
    "imu_windows",
    "kaldi_fbank",
    "thermal_frame",
    "thermal_frames",
    "to_mono",
    "vision_frame",
    "vision_window",
    "vision_windows",
]
