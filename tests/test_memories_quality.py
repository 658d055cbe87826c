"""Memories on the synthetic world with ground truth: precision@10 of text, audio-file,
stored-window and arithmetic queries beside chance, and few-shot labels vs zero-shot.

The world model is the session's (``world_cache`` in conftest.py, shared with the other
world tests); windows are held out (a seed neither its training nor its evaluation used).
Every query goes through the product's search path (``Memories.search``: the query
embedder, the wav reader, the LanceDB store)."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from streambind.config import ModelSettings
from streambind.memories import fewshot
from streambind.memories.lance import LanceStore
from streambind.memories.quality import QualityConfig, evaluate, format_report
from streambind.memories.rows import Memory, memory_table
from streambind.serve.embedder import ModelRunner

CFG = QualityConfig(segments_per_class=6, windows_per_segment=3, audio_files_per_class=1,
                    likes_per_class=2, arithmetic_pairs=16, draws=3)


@pytest.fixture(scope="module")
def quality(world_cache, tmp_path_factory):
    _, model_dir, _ = world_cache
    runner = ModelRunner(ModelSettings(source=str(model_dir), device="cpu"))
    tmp = tmp_path_factory.mktemp("quality")
    report = evaluate(runner, LanceStore(str(tmp / "store")), CFG, tmp)
    print(format_report(report))
    return report, tmp


def test_text_audio_file_and_stored_window_queries_beat_chance(quality) -> None:
    report, tmp = quality
    r = report["retrieval"]
    chance = 1 / 12
    assert r["text"]["audio"]["chance"] == pytest.approx(chance, abs=1e-3)
    assert r["text"]["audio"]["queries"] == 24  # every prompt of every activity
    assert r["text"]["audio"]["p_at_k"] > 3 * chance  # emergent: audio never saw a caption
    assert r["audio_file"]["audio->audio"]["p_at_k"] > 3 * chance
    assert r["audio_file"]["audio->audio"]["queries"] == 12
    assert r["like"]["audio->audio"]["p_at_k"] > 3 * chance  # other segments only
    # Vision figures are reported, not asserted: the world model's camera tower is near
    # chance on held-out windows (its own zero-shot, not the store's doing).
    assert set(r["like"]) == {"vision->vision", "vision->audio", "audio->vision", "audio->audio"}
    wavs = sorted(tmp.glob("query-*.wav"))
    assert len(wavs) == 12
    with wave.open(str(wavs[0])) as w:  # the queries really were .wav files
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16_000)


def test_arithmetic_query_moves_a_window_to_the_other_activity(quality) -> None:
    arith = quality[0]["retrieval"]["arithmetic"]["audio"]
    assert arith["p_at_k"] > 3 / 12  # window of A - text A + text B finds B...
    assert arith["p_at_k"] > arith["window_alone_p_at_k_for_b"] + 0.15  # ...not the window
    assert arith["sum_p_at_k_for_a"] < arith["p_at_k"]


def test_few_shot_labels_match_or_beat_zero_shot_and_chance(quality) -> None:
    f = quality[0]["fewshot"]
    assert set(f["modalities"]["audio"]["shots"]) == {"1", "2", "4", "8"}
    row = f["modalities"]["audio"]
    eight = row["shots"]["8"]
    # Noise: 3 draws over ~100 test windows; a few points either way.
    assert eight["examples_and_prompts"] >= row["zero_shot"] - 0.06
    assert eight["examples_and_prompts"] > 3 * f["chance"]
    assert eight["examples"] > 3 * f["chance"]  # examples alone, no prompt
    assert eight["examples"] >= row["shots"]["1"]["examples"] - 0.06  # more shots, no worse
    vision = f["modalities"]["vision"]["shots"]["8"]
    assert 0 <= vision["examples_and_prompts"] <= 1


def test_prototype_arithmetic_and_store_lookup(tmp_path) -> None:
    e = np.array([[3.0, 0, 0], [0, 4.0, 0]], np.float32)
    p = fewshot.prototype(e, None)
    assert np.allclose(p, np.array([1, 1, 0]) / np.sqrt(2), atol=1e-6)
    mixed = fewshot.prototype(e, np.array([0, 0, 2.0]), text_weight=1.0)
    assert np.allclose(mixed, unit_np([1 / np.sqrt(2), 1 / np.sqrt(2), 1.0]), atol=1e-6)
    assert np.allclose(fewshot.prototype(None, np.array([0, 0, 5.0])), [0, 0, 1])
    with pytest.raises(fewshot.FewShotError):
        fewshot.prototype(None, None)
    labels = fewshot.label_vectors(["a", "b"], {"a": e[:1]}, {"b": np.array([0, 1.0, 0])})
    assert fewshot.classify(np.array([[1.0, 0.1, 0], [0.1, 1, 0]]), labels).tolist() == [0, 1]
    store = LanceStore(str(tmp_path / "s"))
    rows = [Memory(f"w{i}", "d", "audio", i, i + 1, "m", unit_np(v)) for i, v in enumerate(e)]
    store.upsert("m", memory_table(rows, 1))
    assert np.allclose(fewshot.examples_from_store(store, "m", ["w1", "w0"]),
                       [unit_np(e[1]), unit_np(e[0])])
    with pytest.raises(fewshot.FewShotError):
        fewshot.examples_from_store(store, "m", ["w0", "nope"])


def unit_np(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)
