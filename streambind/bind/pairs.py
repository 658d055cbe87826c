"""(sensor window, camera window) pairs for binding: from Kafka, to and from Parquet.

From Kafka: both topics are read from their start to the end offsets seen when reading
began, decoded and windowed by the streaming core (its decoder and windower for the
camera; :mod:`streambind.stream.custom` for the new sensor), and each sensor window is
paired with the camera window of the same device that overlaps it most. The camera
windows are embedded by the frozen base vision tower once, here: a pair stores the
sensor's tower input and the camera's embedding, so training never runs the image tower.

Parquet (``streambind bind export``): one row per pair, ``device_id``, ``start_ns``,
``end_ns`` (the sensor window), ``camera_start_ns``, ``sensor`` (float32 bytes of the
tower input), ``vision`` (the frozen embedding); the file's metadata records the base
model, the tower config and the input shape, so training checks it binds to the same base.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from streambind.errors import ConfigError, FeatureError, RecordError, StreambindError
from streambind.model.kinds import BoundTowerConfig, tower_config_from_dict, tower_config_to_dict
from streambind.stream import custom
from streambind.stream.window_types import ClosedWindow, WindowSpec
from streambind.stream.windows import Windower
from streambind.units import NS_PER_S

logger = logging.getLogger(__name__)


class PairsError(StreambindError):
    """No usable pairs (empty topics, no overlap, a file for another base or tower)."""


@dataclass
class PairSet:
    """Paired windows: sensor tower inputs (N, ...) and frozen camera embeddings (N, E)."""

    device_ids: list[str]
    start_ns: np.ndarray  # (N,) sensor window start
    end_ns: np.ndarray  # (N,)
    camera_start_ns: np.ndarray  # (N,)
    sensor: torch.Tensor  # (N, *input_shape)
    vision: torch.Tensor  # (N, E), L2-normalized
    base: str
    tower: BoundTowerConfig
    dropped: int = 0  # sensor windows without a camera window (or bad)

    def __len__(self) -> int:
        return len(self.device_ids)

    def data_range(self) -> dict:
        """What the manifest records as the training data range."""
        return {"start_ns": int(self.start_ns.min()) if len(self) else None,
                "end_ns": int(self.end_ns.max()) if len(self) else None,
                "devices": sorted(set(self.device_ids)), "pairs": len(self),
                "dropped_windows": self.dropped}


def _consume(bootstrap: str, topic: str, timeout_s: float) -> Iterator:
    """Every record of ``topic`` up to the end offsets at the time of the call."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=32 << 20,
                             fetch_max_bytes=64 << 20)
    try:
        deadline = time.monotonic() + timeout_s
        parts = consumer.partitions_for_topic(topic)
        while parts is None and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise PairsError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= end[tp] for tp in tps):
                return
            for batch in consumer.poll(timeout_ms=500).values():
                yield from batch
        raise PairsError(f"reading {topic} timed out after {timeout_s:.0f} s")
    finally:
        consumer.close()


def _windows(records: Iterator, decode: Callable, spec: WindowSpec) -> list[ClosedWindow]:
    """Decode and window records with the core's windower (one per partition); bad records
    are counted and skipped (a training read, not the pipeline: there is no DLQ here)."""
    windowers: dict[int, Windower] = {}
    closed: list[ClosedWindow] = []
    bad = 0
    now_ns = time.time_ns()
    for rec in records:
        try:
            chunks = decode(rec, now_ns)
        except (RecordError, FeatureError) as exc:
            bad += 1
            logger.debug("skipped record %s@%d: %s", rec.topic, rec.offset, exc)
            continue
        w = windowers.get(rec.partition)
        if w is None:
            w = windowers[rec.partition] = Windower(spec, partition=rec.partition)
        for chunk in chunks:
            w.add(chunk)
        closed.extend(w.poll())
    for w in windowers.values():
        closed.extend(w.flush())
    if bad:
        logger.warning("%d records could not be decoded and were skipped", bad)
    return [c for c in closed if c.outcome == "ok"]


def read_camera_windows(bootstrap: str, topic: str, timeout_s: float = 120.0
                        ) -> list[ClosedWindow]:
    """The camera topic's closed 2 s windows (1 s hop), as the pipeline cuts them: the
    pipeline's own vision window (coverage, gap fill, two frames), so a 2 fps camera pairs
    as it is labelled at inference."""
    from streambind.stream.records import decode_record

    def decode(rec, now_ns):  # noqa: ANN001, ANN202
        return decode_record("vision", rec.key, rec.value, rec.headers,
                             partition=rec.partition, offset=rec.offset, now_ns=now_ns,
                             topic=rec.topic)

    spec = WindowSpec.default("vision", hop_ns=NS_PER_S)
    return _windows(_consume(bootstrap, topic, timeout_s), decode, spec)


def read_sensor_windows(bootstrap: str, topic: str, cfg: BoundTowerConfig,
                        timeout_s: float = 120.0) -> list[ClosedWindow]:
    """A new sensor's closed windows (its tower's window length, half-window hop)."""
    def decode(rec, now_ns):  # noqa: ANN001, ANN202
        return custom.decode(cfg.kind, rec.key, rec.value, rec.headers,
                             partition=rec.partition, offset=rec.offset, now_ns=now_ns,
                             topic=rec.topic)

    return _windows(_consume(bootstrap, topic, timeout_s), decode, custom.window_spec(cfg))


def pair_windows(sensor: list[ClosedWindow], camera: list[ClosedWindow]
                 ) -> list[tuple[int, int]]:
    """(sensor index, camera index) pairs: for each sensor window the camera window of the
    same device with the largest overlap (ties: nearest centre); none if nothing overlaps."""
    by_device: dict[str, list[tuple[int, int, int]]] = {}
    for j, c in enumerate(camera):
        by_device.setdefault(c.key.device_id, []).append((c.start_ns, c.end_ns, j))
    out = []
    for i, s in enumerate(sensor):
        best, best_key = None, None
        centre = (s.start_ns + s.end_ns) // 2
        for start, end, j in by_device.get(s.key.device_id, ()):
            overlap = min(end, s.end_ns) - max(start, s.start_ns)
            if overlap <= 0:
                continue
            key = (overlap, -abs((start + end) // 2 - centre))
            if best_key is None or key > best_key:
                best, best_key = j, key
        if best is not None:
            out.append((i, best))
    return out


def pairs_from_kafka(bootstrap: str, sensor_topic: str, camera_topic: str,
                     cfg: BoundTowerConfig, base_model, base: str, *,  # noqa: ANN001
                     timeout_s: float = 120.0, batch_size: int = 32) -> PairSet:
    """Read, window, pair and featurize; embed the paired camera windows once."""
    from streambind.stream.assemble import assemble
    from streambind.stream.embed import featurize

    sensor = read_sensor_windows(bootstrap, sensor_topic, cfg, timeout_s)
    camera = read_camera_windows(bootstrap, camera_topic, timeout_s)
    matches = pair_windows(sensor, camera)
    logger.info("%d %s windows, %d camera windows, %d pairs", len(sensor), cfg.modality,
                len(camera), len(matches))
    inputs, cams, kept = [], [], []
    for i, j in matches:
        try:
            inputs.append(custom.tower_input(sensor[i], cfg))
            cams.append(assemble(camera[j]))
            kept.append((i, j))
        except (FeatureError, StreambindError) as exc:
            logger.debug("pair %s dropped: %s", sensor[i].key, exc)
    if not kept:
        raise PairsError(f"no (camera, {cfg.modality}) pairs in {camera_topic} and "
                         f"{sensor_topic}: the same devices must publish both, overlapping")
    vision = base_model.towers["vision"]
    embs = []
    with torch.no_grad():
        for k in range(0, len(cams), batch_size):
            x = featurize("vision", cams[k : k + batch_size])
            embs.append(torch.nn.functional.normalize(vision(x).float(), dim=-1))
    return PairSet(
        device_ids=[sensor[i].key.device_id for i, _ in kept],
        start_ns=np.array([sensor[i].start_ns for i, _ in kept], dtype=np.int64),
        end_ns=np.array([sensor[i].end_ns for i, _ in kept], dtype=np.int64),
        camera_start_ns=np.array([camera[j].start_ns for _, j in kept], dtype=np.int64),
        sensor=torch.stack(inputs), vision=torch.cat(embs), base=base, tower=cfg,
        dropped=len(sensor) - len(kept),
    )


def write_parquet(pairs: PairSet, path: str | Path) -> Path:
    """Export pairs to one Parquet file (metadata: base, tower config, input shape)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    emb = pairs.vision.numpy().astype(np.float32)
    table = pa.table({
        "device_id": pairs.device_ids, "start_ns": pairs.start_ns, "end_ns": pairs.end_ns,
        "camera_start_ns": pairs.camera_start_ns,
        "sensor": [row.numpy().astype("<f4").tobytes() for row in pairs.sensor],
        "vision": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
    })
    meta = {"base": pairs.base, "tower": tower_config_to_dict(pairs.tower),
            "input_shape": list(pairs.sensor.shape[1:]), "dropped": pairs.dropped}
    table = table.replace_schema_metadata({"streambind.pairs": json.dumps(meta)})
    pq.write_table(table, path)
    return path


def parquet_meta(path: str | Path) -> dict:
    """The pairs file's metadata (base, tower, input_shape)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"streambind.pairs")
    if raw is None:
        raise PairsError(f"{path} is not a streambind pairs file")
    return json.loads(raw)


def read_parquet(path: str | Path) -> PairSet:
    """Read a pairs file written by :func:`write_parquet`."""
    meta = parquet_meta(path)
    try:
        tower = tower_config_from_dict(meta["tower"])
    except (ConfigError, KeyError) as exc:
        raise PairsError(f"{path}: bad tower config: {exc}") from exc
    table = pq.read_table(path)
    shape = tuple(meta["input_shape"])
    sensor = decode_sensor_column(table.column("sensor").to_pylist(), shape)
    vision = np.stack(table.column("vision").to_numpy(zero_copy_only=False)).astype(np.float32)
    return PairSet(
        device_ids=table.column("device_id").to_pylist(),
        start_ns=table.column("start_ns").to_numpy(), end_ns=table.column("end_ns").to_numpy(),
        camera_start_ns=table.column("camera_start_ns").to_numpy(), sensor=sensor,
        vision=torch.from_numpy(vision), base=meta["base"], tower=tower,
        dropped=int(meta.get("dropped", 0)),
    )


def decode_sensor_column(values: list[bytes], shape: tuple[int, ...]) -> torch.Tensor:
    """float32 bytes per row -> (N, *shape); a row of the wrong size is a PairsError."""
    size = int(np.prod(shape)) * 4
    if any(len(v) != size for v in values):
        raise PairsError(f"a pair's sensor input is not {shape} float32")
    arr = np.frombuffer(b"".join(values), dtype="<f4").reshape(len(values), *shape)
    return torch.from_numpy(arr.copy())
