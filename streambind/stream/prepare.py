"""Closed windows of one modality -> one batch tensor, and what failed on the way.

:func:`prepare_batch` is the embed worker's preparation step, a pure function of the
windows: each window is assembled (:func:`assemble_window`), the assembled ones are
featurized together, and when that fails the windows are featurized one by one so that
only the bad ones are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streambind.errors import FeatureError
from streambind.stream.assemble import (
    AssemblyError,
    FrameFailure,
    MixedSampleRateError,
    RawInput,
    assemble,
)
from streambind.stream.windows import ClosedWindow

Featurize = Callable[[str, Sequence[RawInput]], Any]


def assemble_window(window: ClosedWindow) -> RawInput:
    """Assemble a window; a window mixing sample rates is put on its first chunk's rate."""
    try:
        return assemble(window)
    except MixedSampleRateError:
        return assemble(window, resample_to_hz=window.chunks[0].sample_rate)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The outcome of :func:`prepare_batch` for ``n`` windows.

    ``tensor``: the rows of the windows whose ``errors[i]`` is None, in window order (None
    when every window failed). ``errors[i]``: the :class:`AssemblyError` or
    :class:`FeatureError` that dropped window ``i``. ``failures[i]``: the frames of window
    ``i`` that did not decode (for a kept window, a neighbour stood in for each).
    """

    tensor: Any
    errors: tuple[AssemblyError | FeatureError | None, ...]
    failures: tuple[tuple[FrameFailure, ...], ...]


def _frame_failures(raw: RawInput) -> tuple[FrameFailure, ...]:
    return tuple(getattr(raw, "failures", ()))


def prepare_batch(modality: str, windows: Sequence[ClosedWindow],
                  featurize: Featurize) -> Prepared:
    """Assemble and featurize ``windows`` (one modality) with ``featurize``."""
    errors: list[AssemblyError | FeatureError | None] = [None] * len(windows)
    failures: list[tuple[FrameFailure, ...]] = [()] * len(windows)
    raws: dict[int, RawInput] = {}
    for i, window in enumerate(windows):
        try:
            raws[i] = assemble_window(window)
            failures[i] = _frame_failures(raws[i])
        except (AssemblyError, FeatureError) as exc:
            errors[i] = exc
            failures[i] = tuple(getattr(exc, "failures", ()))
    if not raws:
        return Prepared(None, tuple(errors), tuple(failures))
    try:
        tensor = featurize(modality, list(raws.values()))
    except FeatureError:
        for i, raw in list(raws.items()):  # find the bad window(s), keep the rest
            try:
                featurize(modality, [raw])
            except FeatureError as exc:
                errors[i] = exc
                del raws[i]
        tensor = featurize(modality, list(raws.values())) if raws else None
    return Prepared(tensor, tuple(errors), tuple(failures))
