"""Training and evaluation windows from the world, in process (no Kafka).

Each sample is one moment of one activity segment, rendered by the world's pure renderers
into every modality and featurized by the streaming core's real featurizers, so the model
sees at training time exactly what it sees at inference. The windows of a segment are
consecutive (hop ``hop_s``) and segments lie back to back on one timeline, so that
:func:`streambind.bind.recipe.time_block_split` splits them into contiguous blocks (one
segment per block) as it would split a recording.

Window geometry follows the stream (DESIGN "Windows"): vision 2 s (first and last frame),
audio 2 s, depth and thermal one frame at the middle, IMU 5 s centred on the vision window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from streambind.units import NS_PER_S
from streambind.world.activities import ACTIVITIES, ACTIVITY_NAMES
from streambind.world.featurize import featurize_batch
from streambind.world.nuisance import sample_nuisance
from streambind.world.render import RawWindow, render_windows

logger = logging.getLogger(__name__)

S = NS_PER_S  # short name for event-time arithmetic
VISION_S, IMU_S = 2.0, 5.0
SENSORS: tuple[str, ...] = ("audio", "depth", "thermal", "imu")


@dataclass
class WorldData:
    """Featurized windows of every modality for the same moments, with their labels.

    ``inputs[m]`` is (N, ...) in float16 for the big frame tensors (memory) and float32
    otherwise; cast with ``.float()`` before a forward pass.
    """

    labels: np.ndarray  # (N,) activity indices into ACTIVITIES
    start_ns: np.ndarray  # (N,) vision window start on the synthetic timeline
    end_ns: np.ndarray  # (N,)
    block_ns: int  # one segment per block
    inputs: dict[str, Tensor] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by ``labels``."""
        return ACTIVITY_NAMES

    def __len__(self) -> int:
        return len(self.labels)


def generate(
    segments_per_class: int,
    windows_per_segment: int,
    seed: int,
    modalities: tuple[str, ...] = ("vision", *SENSORS),
    hop_s: float = 1.0,
    classes: tuple[str, ...] | None = None,
    progress: bool = False,
) -> WorldData:
    """Render and featurize ``segments_per_class`` segments of every activity (or of
    ``classes``), ``windows_per_segment`` windows each, deterministically from ``seed``
    (``progress``: a progress bar over the segments, for the first, silent minute)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    names = classes or ACTIVITY_NAMES
    order = [c for c in names for _ in range(segments_per_class)]
    rng.shuffle(order)
    lead_s = (IMU_S - VISION_S) / 2  # the IMU window starts this long before the vision one
    span_s = lead_s + IMU_S + hop_s * (windows_per_segment - 1)
    block_ns = int(np.ceil(span_s)) * S
    labels, starts, raw = [], [], {m: [] for m in modalities}
    for k, name in enumerate(tqdm(order, desc="world: rendering windows", disable=not progress)):
        n = sample_nuisance(rng)
        for w in range(windows_per_segment):
            t0 = lead_s + w * hop_s  # vision window start, seconds into the segment
            labels.append(ACTIVITY_NAMES.index(name))
            starts.append(k * block_ns + int(t0 * S))
            # The world's own renderer: every modality centred on the same moment.
            windows = render_windows(name, rng, modalities, nuisance=n,
                                     centre_s=t0 + VISION_S / 2)
            for m in modalities:
                raw[m].append(windows[m])
    data = WorldData(
        labels=np.asarray(labels, dtype=np.int64),
        start_ns=np.asarray(starts, dtype=np.int64),
        end_ns=np.asarray(starts, dtype=np.int64) + int(VISION_S * S),
        block_ns=block_ns,
    )
    for m in modalities:
        data.inputs[m] = featurize(m, raw[m])
    return data


def featurize(modality: str, raw: list[RawWindow]) -> Tensor:
    """The streaming core's featurizers (through the world's batch helper), in chunks so
    that the float32 intermediates stay small; frame tensors are kept in float16."""
    chunk = 64
    parts = []
    for i in range(0, len(raw), chunk):
        part = featurize_batch(raw[i : i + chunk])
        parts.append(part.half() if modality in ("vision", "depth", "thermal") else part)
    return torch.cat(parts)


def prompts() -> list[list[str]]:
    """Each activity's zero-shot prompts, in class order."""
    return [list(a.prompts) for a in ACTIVITIES]
