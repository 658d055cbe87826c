"""prepare_batch: one batch tensor for the windows that assemble and featurize, and per
window the error that dropped it and the frames that did not decode."""

from __future__ import annotations

import numpy as np

from streambind.errors import FeatureError
from streambind.stream.assemble import AssemblyError
from streambind.stream.chunks import SensorChunk
from streambind.stream.embed import featurize
from streambind.stream.prepare import prepare_batch
from streambind.stream.windows import Windower, WindowSpec

MS = 1_000_000
T0 = 1_700_000_000_000 * MS  # 10 s aligned


def _depth_window(device: str, frames: list[np.ndarray | bytes]):
    windower = Windower(WindowSpec.default("depth", hop_ns=2000 * MS), lambda: 0.0)
    for i, frame in enumerate(frames):  # 4 fps for 2 s
        ts = T0 + i * 250 * MS
        encoded = isinstance(frame, bytes)
        windower.add(SensorChunk("depth", device, ts, ts + 250 * MS, i, frame, None, None, 0, i,
                                 encoding="u16_mm" if encoded else None,
                                 width=8 if encoded else 0, height=8 if encoded else 0))
    (window,) = [w for w in windower.flush() if w.start_ns == T0]
    return window


def test_bad_windows_are_dropped_and_the_rest_keep_their_order():
    good_a = _depth_window("a", [np.full((8, 8), 1000, np.uint16)] * 8)
    bad_shape = _depth_window("b", [np.ones((4, 4, 2), np.uint16)] * 8)  # featurize refuses
    undecodable = _depth_window("c", [b"not a frame"] * 8)  # no frame decodes: assembly
    frame = np.full((8, 8), 2000, np.uint16)
    good_b = _depth_window("d", [frame] * 4 + [b"short"] + [frame] * 3)  # middle one broken
    windows = [good_a, bad_shape, undecodable, good_b]

    prepared = prepare_batch("depth", windows, featurize)

    assert [type(e) for e in prepared.errors] == [type(None), FeatureError, AssemblyError,
                                                  type(None)]
    assert prepared.tensor.shape[0] == 2  # the rows of good_a and good_b, in that order
    expected = prepare_batch("depth", [good_a, good_b], featurize).tensor
    assert np.array_equal(prepared.tensor.numpy(), expected.numpy())
    # every candidate the undecodable window kept failed, and is reported (dead letters)
    assert [f.chunk for f in prepared.failures[2]] == sorted(
        undecodable.chunks, key=lambda c: (abs(c.ts_ns - T0 - 1000 * MS), c.ts_ns))
    assert all(f.error.reason for f in prepared.failures[2])
    assert prepared.failures[0] == prepared.failures[1] == ()
    # good_b's middle frame (at 1 s) does not decode: a neighbour stood in, it is reported
    assert [f.chunk.data for f in prepared.failures[3]] == [b"short"]


def test_a_batch_where_every_window_fails_has_no_tensor():
    prepared = prepare_batch("depth", [_depth_window("c", [b"x"] * 8)], featurize)
    assert prepared.tensor is None and isinstance(prepared.errors[0], AssemblyError)
