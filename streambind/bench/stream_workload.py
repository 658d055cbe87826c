"""Workloads of ``streambind bench stream``: the simulated world, or fleets from templates.

* ``world``: :func:`streambind.sim.simulator.stream`, the simulator's devices (activity
  scripts, every frame rendered and encoded); realistic, but about 46 device-seconds of
  event time per CPU-second to generate.
* ``templates``: for large fleets and big cameras. A few payloads per modality are made
  once by the same simulated devices (rendered, JPEG-encoded at the requested size), then
  every device's records reuse them round-robin, each with its own device id, event time
  and sequence numbers, at the requested frame rate. The consumer does the same work per
  record (IPC, validation, windowing) and per window (the selected frames are decoded); only
  the generation is cheap.

Both yield ``(topic, record)`` in event-time order across the fleet, lazily.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streambind.sim.records import Record
from streambind.stream.ipc import read_ipc
from streambind.stream.records import IMU_COLUMNS, encode_columns, schema_headers
from streambind.units import NS_PER_S

TEMPLATES_PER_MODALITY = 8
AUDIO_RATE_HZ = 16_000
AUDIO_CHUNK_MS = 100
IMU_RATE_HZ = 200
IMU_BATCH = 20  # 100 ms of samples per record


@dataclass(frozen=True)
class Workload:
    """What to generate. ``fps``: frames per second of vision, depth and thermal (None:
    the simulator's per-device 2, 4 or 5); ``frame_size``: camera (width, height)."""

    devices: int
    duration_s: float
    modalities: tuple[str, ...]
    seed: int = 0
    fps: float | None = None
    frame_size: tuple[int, int] | None = None
    generator: str = "world"


def records(work: Workload, start_ns: int, topics: Mapping[str, str]) -> Iterator[
        tuple[str, Record]]:
    """The workload's records as ``(topic, record)``, lazily, in event-time order."""
    if work.generator == "world":
        from streambind.sim.simulator import stream

        size = None if work.frame_size is None else (work.frame_size[1], work.frame_size[0])
        for _, _, topic, rec in stream(work.devices, work.duration_s,
                                       modalities=work.modalities, seed=work.seed,
                                       start_ns=start_ns, topics=topics, drop_share=0.0,
                                       reorder_share=0.0, frame_size=size):
            yield topic, rec
        return
    yield from _template_records(work, start_ns, topics)


def _templates(work: Workload, start_ns: int) -> dict[str, list[dict[str, object]]]:
    """Per modality, a few rows (column -> value) taken from simulated devices."""
    from streambind.sim.devices import Device

    size = None if work.frame_size is None else (work.frame_size[1], work.frame_size[0])
    extra = {"frame_size": size} if size else {}
    out: dict[str, list[dict[str, object]]] = {}
    for modality in work.modalities:
        rows: list[dict[str, object]] = []
        for d in itertools.count():
            dev = Device(f"template-{d}", start_ns, start_ns + 4 * NS_PER_S, work.seed + d,
                         **extra)
            for _, _, rec in itertools.islice(dev.stream(modality), TEMPLATES_PER_MODALITY):
                table = read_ipc(rec.value, 10_000)
                rows.append({name: table.column(name).to_pylist()
                             for name in table.schema.names})
            if len(rows) >= TEMPLATES_PER_MODALITY or d > 8:
                break
        out[modality] = rows
    return out


def _device_stream(modality: str, device: str, rows: Sequence[dict[str, object]],
                   start_ns: int, end_ns: int, fps: float, phase: int) -> Iterator[
                       tuple[int, str, Record]]:
    """One device's records of one modality: ``(ts_ns, modality, record)``."""
    headers = schema_headers(modality)
    key = device.encode()
    if modality == "audio":
        n = AUDIO_RATE_HZ * AUDIO_CHUNK_MS // 1000
        period = AUDIO_CHUNK_MS * 1_000_000
        pcm = [np.frombuffer(r["data"][0], "<i2") for r in rows]  # type: ignore[index]
        pcm = [np.resize(p, n).astype("<i2").tobytes() for p in pcm]  # 100 ms at 16 kHz
        for i, ts in enumerate(range(start_ns, end_ns, period)):
            value = encode_columns("audio", {
                "device_id": [device], "ts_ns": [ts], "seq": [i], "sample_rate": [AUDIO_RATE_HZ],
                "channels": [1], "encoding": ["pcm_s16le"], "data": [pcm[(i + phase) % len(pcm)]]})
            yield ts, modality, Record(key, value, headers)
        return
    if modality == "imu":
        period = NS_PER_S // IMU_RATE_HZ
        values = [np.stack([np.resize(np.asarray(r[c], np.float32), IMU_BATCH)
                            for c in IMU_COLUMNS], axis=1) for r in rows]  # (IMU_BATCH, 6)
        for i, ts in enumerate(range(start_ns, end_ns, IMU_BATCH * period)):
            cols: dict[str, object] = {
                "device_id": [device] * IMU_BATCH,
                "ts_ns": [ts + j * period for j in range(IMU_BATCH)],
                "seq": list(range(i * IMU_BATCH, (i + 1) * IMU_BATCH))}
            vals = values[(i + phase) % len(values)]
            for j, name in enumerate(IMU_COLUMNS):
                cols[name] = vals[:, j]
            yield ts, modality, Record(key, encode_columns("imu", cols), headers)
        return
    period = round(NS_PER_S / fps)
    for i, ts in enumerate(range(start_ns, end_ns, period)):
        row = rows[(i + phase) % len(rows)]
        value = encode_columns(modality, {
            "device_id": [device], "ts_ns": [ts], "seq": [i], "width": row["width"],
            "height": row["height"], "encoding": row["encoding"], "data": row["data"]})
        yield ts, modality, Record(key, value, headers)


def _template_records(work: Workload, start_ns: int, topics: Mapping[str, str]) -> Iterator[
        tuple[str, Record]]:
    rows = _templates(work, start_ns)
    end_ns = start_ns + round(work.duration_s * NS_PER_S)
    rng = np.random.default_rng(work.seed)
    streams = []
    for d in range(work.devices):
        fps = work.fps if work.fps is not None else float(rng.choice([2.0, 4.0, 5.0]))
        skew = int(rng.integers(0, 50)) * 1_000_000  # devices do not tick in lockstep
        for modality in work.modalities:
            streams.append(_device_stream(modality, f"dev-{d:04d}", rows[modality],
                                          start_ns + skew, end_ns, fps, d))
    for _, modality, rec in heapq.merge(*streams, key=lambda x: x[0]):
        yield topics[modality], rec
