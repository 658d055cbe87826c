"""The embed worker featurizes the next batch while the embedder works on the current one,
and still publishes batches (so each device's windows) in order."""

from __future__ import annotations

import threading
import time

import torch
from kafka.future import Future

from streambind.sim.streams import aligned_origin_ns, timed_stream
from streambind.stream import worker as worker_mod
from streambind.stream.records import DecodeOptions, decode_record
from streambind.stream.windows import Windower, WindowSpec
from streambind.stream.worker import EmbedWorker


def _imu_windows(devices: int, seconds: int):
    windower = Windower(WindowSpec.default("imu"))
    t0 = aligned_origin_ns()
    recs = sorted((x for d in range(devices)
                   for x in timed_stream(f"dev-{d}", t0, {"imu": seconds})), key=lambda x: x[0])
    for i, (_, _, rec) in enumerate(recs):
        for chunk in decode_record("imu", rec.key, rec.value, rec.headers, partition=0,
                                   offset=i, now_ns=time.time_ns(),
                                   options=DecodeOptions(max_future_ns=10**18)):
            windower.add(chunk)
    return [w for w in windower.flush() if w.outcome == "ok"]


class _BlockingEmbedder:
    """The first call waits until released; records the order of the batches it saw."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def embed(self, modality, batch):
        self.calls += 1
        if self.calls == 1:
            assert self.release.wait(30)
        return torch.zeros(batch.shape[0], 4)


class _Sink:
    def __init__(self):
        self.keys = []

    def publish(self, producer, items):
        self.keys += [i.window.key for i in items]
        return [Future().success(None) for _ in items]


def test_next_batch_is_featurized_while_the_embedder_works(monkeypatch):
    windows = _imu_windows(devices=2, seconds=20)
    assert len(windows) >= 8
    featurized = []
    real = worker_mod.featurize

    def spy(modality, raws):
        featurized.append((threading.current_thread().name, len(raws)))
        return real(modality, raws)

    monkeypatch.setattr(worker_mod, "featurize", spy)
    embedder, sink, acks = _BlockingEmbedder(), _Sink(), []
    worker = EmbedWorker(embedder, sink, None, "m", 4, lambda t, k, c: acks.append(k))
    for w in windows:
        worker.put("tp", w)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(featurized) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # The first batch is stuck in embed(); the second was featurized meanwhile.
        assert len(featurized) >= 2 and embedder.calls == 1 and not sink.keys
        assert all(name.startswith("streambind-featurize") for name, _ in featurized)
        embedder.release.set()
        while len(acks) < len(windows) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        embedder.release.set()
        worker.stop()
    assert worker.error is None
    assert sink.keys == [w.key for w in windows]  # published in queue order


def test_without_prepare_ahead_nothing_is_featurized_during_embed(monkeypatch):
    windows = _imu_windows(devices=2, seconds=20)
    featurized = []
    real = worker_mod.featurize
    monkeypatch.setattr(worker_mod, "featurize",
                        lambda m, raws: featurized.append(len(raws)) or real(m, raws))
    embedder, sink, acks = _BlockingEmbedder(), _Sink(), []
    worker = EmbedWorker(embedder, sink, None, "m", 4, lambda t, k, c: acks.append(k),
                         prepare_ahead=False)
    for w in windows:
        worker.put("tp", w)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while embedder.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # room for a (wrong) second featurize to happen
        assert len(featurized) == 1
        embedder.release.set()
        while len(acks) < len(windows) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        embedder.release.set()
        worker.stop()
    assert sink.keys == [w.key for w in windows]
