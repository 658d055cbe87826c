"""A procedural world with ground truth: activities rendered coherently into every sensor.

``ACTIVITIES`` lists the activities (name = label, prompts for zero-shot label sets,
caption templates for training text). Renderers are pure: given an activity, a time in its
segment, a :class:`Nuisance` draw and a numpy Generator for sensor noise, they return one
modality's raw data. :func:`render_windows` makes a time-aligned example of every modality
for training (featurize it with :func:`streambind.world.featurize.featurize`); the
simulator (``streambind simulate``) streams devices that follow activity scripts.
"""

from streambind.world.activities import (
    ACTIVITIES,
    ACTIVITY_NAMES,
    Activity,
    UnknownActivityError,
    activity,
    activity_index,
    caption,
    label_set,
    listing,
)
from streambind.world.nuisance import Nuisance, sample_nuisance
from streambind.world.render import (
    ENCODINGS,
    MODALITIES,
    WINDOW_S,
    RawWindow,
    render_audio,
    render_depth,
    render_frame,
    render_imu,
    render_thermal,
    render_window,
    render_windows,
)

__all__ = [
    "ACTIVITIES", "ACTIVITY_NAMES", "ENCODINGS", "MODALITIES", "WINDOW_S", "Activity",
    "Nuisance", "RawWindow", "UnknownActivityError", "activity", "activity_index", "caption",
    "label_set", "listing", "render_audio", "render_depth", "render_frame", "render_imu",
    "render_thermal", "render_window", "render_windows", "sample_nuisance",
]
