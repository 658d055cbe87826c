"""`streambind bind` on Ray Train from a pairs file; new-kind records and window pairing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streambind.bind import pairs
from streambind.errors import RecordError
from streambind.model.kinds import SeriesConfig
from streambind.stream import custom

S = 1_000_000_000


def test_series_records_round_trip_and_reject_bad_input() -> None:
    data = np.arange(40, dtype=np.float32).reshape(10, 4)
    value = custom.encode_series("dev-1", [5 * S], [0], 100.0, [data])
    chunks = custom.decode("series", b"dev-1", value, custom.headers("series"), partition=0,
                           offset=3, now_ns=10 * S)
    assert len(chunks) == 1 and chunks[0].end_ns == 5 * S + S // 10
    assert np.array_equal(chunks[0].data, data)
    with pytest.raises(RecordError) as err:
        custom.decode("series", b"dev-1", value, custom.headers("frame"), partition=0,
                      offset=3, now_ns=10 * S)
    assert err.value.reason == "bad_schema"
    with pytest.raises(RecordError):
        custom.decode("series", b"other", value, custom.headers("series"), partition=0,
                      offset=3, now_ns=10 * S)
    nan = custom.encode_series("dev-1", [5 * S], [0], 100.0, [data * np.nan])
    with pytest.raises(RecordError) as err:
        custom.decode("series", b"dev-1", nan, custom.headers("series"), partition=0,
                      offset=0, now_ns=10 * S)
    assert err.value.reason == "non_finite"


def test_series_tensor_resamples_fills_and_pads() -> None:
    cfg = SeriesConfig(name="wrist", channels=2, sample_rate_hz=50.0, window_s=2.0,
                       patch_samples=10, width=32, depth=1, heads=4)
    samples = np.stack([np.linspace(0, 1, 200), np.ones(200)], 1).astype(np.float32)
    samples[50:60] = np.nan  # a gap
    out = custom.series_tensor(samples, 100.0, cfg)
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    assert torch.allclose(out[1], torch.ones(100), atol=1e-3)


def test_pairing_takes_the_most_overlapping_camera_window() -> None:
    from streambind.stream.window_types import WindowKey

    class W:
        def __init__(self, dev: str, start: int, end: int) -> None:
            self.key = WindowKey(dev, "x", start, end)
            self.start_ns, self.end_ns = start, end

    sensor = [W("a", 0, 5 * S), W("b", 10 * S, 15 * S), W("c", 0, 5 * S)]
    camera = [W("a", 0, 2 * S), W("a", S, 3 * S), W("a", 3 * S // 2, 7 * S // 2),
              W("b", 14 * S, 16 * S)]
    # a: three cameras overlap fully by 2 s; the one centred nearest 2.5 s wins.
    assert pairs.pair_windows(sensor, camera) == [(0, 2), (1, 3)]


def _write_pairs(path, n_per: int = 24, classes: int = 6) -> SeriesConfig:
    """Class-structured series with frozen 'camera' embeddings per class, 1 s apart."""
    cfg = SeriesConfig(name="wrist", channels=3, sample_rate_hz=40.0, window_s=5.0,
                       patch_samples=20, width=32, depth=1, heads=4, logit_scale=5.0)
    rng = np.random.default_rng(0)
    centres = F.normalize(torch.randn(classes, 32, generator=torch.Generator().manual_seed(1)),
                          dim=-1)
    labels = rng.integers(0, classes, n_per * classes)
    t = np.arange(cfg.samples) / cfg.sample_rate_hz
    x = np.stack([np.stack([np.sin(2 * np.pi * (1 + c) * t + p) for p in (0, 1, 2)])
                  for c in labels]).astype(np.float32)
    x += 0.2 * rng.standard_normal(x.shape).astype(np.float32)
    starts = np.arange(len(labels), dtype=np.int64) * 3 * S
    pair_set = pairs.PairSet(
        device_ids=["dev"] * len(labels), start_ns=starts, end_ns=starts + 5 * S,
        camera_start_ns=starts + S, sensor=torch.from_numpy(x),
        vision=centres[labels] + 0.05 * torch.randn(len(labels), 32), base="tiny", tower=cfg)
    pairs.write_parquet(pair_set, path)
    return cfg


@pytest.mark.ray
def test_bind_cli_trains_on_ray_writes_a_loadable_model_and_resumes(tmp_path, capsys) -> None:
    from streambind.cli import main
    from streambind.model import load_imagebind

    pairs_file = tmp_path / "pairs.parquet"
    _write_pairs(pairs_file)
    back = pairs.read_parquet(pairs_file)
    assert back.sensor.shape == (144, 3, 200) and back.tower.modality == "wrist"
    argv = ["bind", "--pairs", str(pairs_file), "--modality", "wrist", "--kind", "series",
            "--base", "tiny", "--out", str(tmp_path / "bound"), "--steps", "40",
            "--batch-size", "16", "--block-s", "60", "--storage", str(tmp_path / "ray")]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 40 and report["val_pairs"] > 0
    model = load_imagebind(str(tmp_path / "bound"))
    assert "wrist" in model.towers
    entry = model.manifest["towers"][0]
    assert entry["temperature"] == pytest.approx(0.2)
    assert entry["training"]["pairs"] == 144
    assert entry["input"]["shape"] == [3, 200]
    # Same storage: the run is restored from its last checkpoint, not retrained.
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["steps"] == 40 and again["final_loss"] == report["final_loss"]
