"""The workload of ``streambind bench memories`` and its ground truth.

Synthetic memory rows clustered as embeddings are (a unit sum of an activity direction, a
device (scene) direction, a modality direction, a continuous low-dimensional part and
noise) with real window ids, queries "text-like" and "more like this", the five filter
cases as store filters beside numpy row masks, and exact top-k by numpy to score against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streambind.units import NS_PER_S

S = NS_PER_S  # short name for event-time arithmetic
MODALITIES = ("audio", "vision", "depth", "thermal", "imu")
MODEL = "bench-memories"

@dataclass
class BenchData:
    """The rows (as arrays) and queries of one run."""

    vectors: np.ndarray  # (N, D) unit float32
    window_ids: list[str]
    devices: np.ndarray  # (N,) device index
    modalities: np.ndarray  # (N,) modality index
    start_ns: np.ndarray  # (N,)
    end_ns: np.ndarray  # (N,)
    queries: np.ndarray  # (Q, D) unit
    query_kinds: list[str]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def make_data(rows: int, dim: int, devices: int, span_s: float, queries: int,
              seed: int = 0, noise: float = 0.3, latent: float = 1.0,
              latent_dim: int = 24, uniform: bool = False) -> BenchData:
    """Clustered unit vectors with real window ids (see the module docstring); with
    ``uniform``, vectors and queries uniform on the sphere instead (the worst case for an
    index: no structure at all)."""
    from streambind.stream.ids import window_id

    noise_scale = noise
    rng = np.random.default_rng(seed)
    activities = _unit(rng.standard_normal((16, dim)))
    scenes = _unit(rng.standard_normal((devices, dim)))
    modality_dirs = _unit(rng.standard_normal((len(MODALITIES) + 1, dim)))  # last: text
    idx = np.arange(rows)
    dev = idx % devices
    mod = (idx // devices) % len(MODALITIES)
    slot = idx // (devices * len(MODALITIES))
    slots = max(1, -(-rows // (devices * len(MODALITIES))))
    hop_ns = max(S, int(span_s * S / slots))
    start = 1_764_547_200 * S + slot * hop_ns  # 2025-12-01T00:00Z onwards
    end = start + 2 * S
    # An activity per device per segment of 30 windows: neighbours in time look alike.
    act = rng.integers(0, len(activities), size=(devices, slots // 30 + 1))[dev, slot // 30]
    vectors = np.empty((rows, dim), dtype=np.float32)
    # A continuous low-dimensional part (the pose, the loudness, the light...): neighbours
    # are decided by it, and no partitioning of the space lines up with it.
    latent_dim = min(latent_dim, dim)
    basis = np.linalg.qr(rng.standard_normal((dim, latent_dim)))[0].T.astype(np.float32)
    for lo in range(0, rows, 65_536):  # chunks: the noise matrix stays small
        sl = slice(lo, min(rows, lo + 65_536))
        n = sl.stop - lo
        noise = rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
        z = rng.standard_normal((n, latent_dim)).astype(np.float32) / np.sqrt(latent_dim)
        vectors[sl] = _unit(0.6 * activities[act[sl]] + 0.4 * scenes[dev[sl]]
                            + 0.5 * modality_dirs[mod[sl]] + latent * z @ basis
                            + noise_scale * noise)
    if uniform:
        vectors = _unit(rng.standard_normal((rows, dim)).astype(np.float32))
    ids = [window_id(f"dev-{d:04d}", MODALITIES[m], int(s), int(e), MODEL)
           for d, m, s, e in zip(dev.tolist(), mod.tolist(), start.tolist(), end.tolist(),
                                 strict=True)]
    half = queries // 2
    z = rng.standard_normal((half, latent_dim)).astype(np.float32) / np.sqrt(latent_dim)
    text_like = _unit(0.6 * activities[rng.integers(0, len(activities), half)]
                      + 0.8 * modality_dirs[-1] + latent * z @ basis
                      + 0.5 * rng.standard_normal((half, dim)) / np.sqrt(dim))
    if uniform:
        text_like = _unit(rng.standard_normal((half, dim)).astype(np.float32))
    near = vectors[rng.integers(0, rows, queries - half)]
    like = _unit(near + 0.3 * rng.standard_normal(near.shape) / np.sqrt(dim))
    return BenchData(vectors, ids, dev, mod, start, end,
                     np.concatenate([text_like, like]).astype(np.float32),
                     ["text"] * half + ["like"] * (queries - half))


def batch_table(data: BenchData, lo: int, hi: int, stored_at_ns: int) -> pa.Table:
    """Rows ``lo:hi`` as a store table (:func:`streambind.memories.store.row_schema`)."""
    from streambind.memories.store import row_schema

    dim = data.vectors.shape[1]
    n = hi - lo
    return pa.table({
        "window_id": data.window_ids[lo:hi],
        "device_id": [f"dev-{d:04d}" for d in data.devices[lo:hi].tolist()],
        "modality": [MODALITIES[m] for m in data.modalities[lo:hi].tolist()],
        "window_start_ns": data.start_ns[lo:hi], "window_end_ns": data.end_ns[lo:hi],
        "model": [MODEL] * n,
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(data.vectors[lo:hi].reshape(-1), pa.float32()), dim),
        "source_topic": ["sensors.bench"] * n, "source_partition": [0] * n,
        "first_offset": np.arange(lo, hi), "last_offset": np.arange(lo, hi),
        "thumbnail": pa.nulls(n, pa.binary()), "stored_at_ns": [stored_at_ns] * n,
    }, schema=row_schema(dim))



def recall_at_k(found: Sequence[str], truth: Sequence[str]) -> float:
    """|found ∩ truth| / |truth| (1.0 when the truth is empty and nothing was found)."""
    if not truth:
        return 1.0 if not found else 0.0
    return len(set(found) & set(truth)) / len(truth)


def filter_cases(data: BenchData, rng: np.random.Generator, count: int, span_s: float
                 ) -> dict[str, list[tuple[object, np.ndarray]]]:
    """Per case name, ``count`` (store Filter, numpy row mask) pairs."""
    from streambind.memories.store import Filter

    t_lo, t_hi = int(data.start_ns.min()), int(data.end_ns.max())
    devices = int(data.devices.max()) + 1

    def time_range(width_s: float) -> tuple[int, int]:
        width = int(min(width_s, span_s) * S)
        since = int(rng.integers(t_lo, max(t_lo + 1, t_hi - width)))
        return since, since + width

    cases: dict[str, list] = {"none": [], "device": [], "modality": [], "time_1h": [],
                              "device_6h": []}
    all_rows = np.ones(len(data.end_ns), dtype=bool)
    for _ in range(count):
        cases["none"].append((Filter(), all_rows))
        d = int(rng.integers(0, devices))
        cases["device"].append((Filter(devices=(f"dev-{d:04d}",)), data.devices == d))
        m = int(rng.integers(0, len(MODALITIES)))
        cases["modality"].append((Filter(modalities=(MODALITIES[m],)), data.modalities == m))
        since, until = time_range(3600)
        cases["time_1h"].append((Filter(since_ns=since, until_ns=until),
                                 (data.end_ns > since) & (data.start_ns < until)))
        d = int(rng.integers(0, devices))
        since, until = time_range(6 * 3600)
        cases["device_6h"].append((
            Filter(devices=(f"dev-{d:04d}",), since_ns=since, until_ns=until),
            (data.devices == d) & (data.end_ns > since) & (data.start_ns < until)))
    return cases


def exact_top(data: BenchData, query: np.ndarray, mask: np.ndarray, k: int,
              scores: np.ndarray | None = None) -> list[str]:
    """Ground truth: the ids of the k rows passing ``mask`` most similar to ``query``
    (``scores``: the query's (N,) similarities to every row, if already computed)."""
    rows = np.flatnonzero(mask)
    sims = data.vectors[rows] @ query if scores is None else scores[rows]  # (M,)
    if len(rows) > 4 * k:  # partial sort first: at 1M rows a full argsort dominates
        part = np.argpartition(-sims, k)[:k]
        rows, sims = rows[part], sims[part]
    top = rows[np.argsort(-sims, kind="stable")[:k]]
    return [data.window_ids[i] for i in top]
