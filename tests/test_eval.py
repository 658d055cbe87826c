"""Evaluation figures: zero-shot top-1 beside chance, retrieval, agreement, plots."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from streambind.bind import eval as ev


def _clustered(n_per: int, n_classes: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, 16, generator=g), dim=-1)
    labels = np.repeat(np.arange(n_classes), n_per)
    emb = centres[labels] + noise * torch.randn(len(labels), 16, generator=g)
    return centres, labels, emb


def test_zero_shot_top1_confusion_and_chance() -> None:
    centres, labels, emb = _clustered(20, 4, 0.05, seed=0)
    prompts = [torch.stack([c, c + 0.01]) for c in centres]
    result = ev.zero_shot("imu", emb, ev.class_embeddings(prompts), labels, list("abcd"))
    assert result.top1 == 1.0 and result.chance == 0.25 and result.n == 80
    assert result.confusion.trace() == 80 and np.allclose(result.per_class, 1.0)
    noisy = ev.zero_shot("imu", torch.randn(80, 16), centres, labels, list("abcd"))
    assert noisy.top1 < 0.6
    assert set(noisy.as_dict()["per_class"]) == set("abcd")


def test_unbalanced_chance_is_the_majority_share() -> None:
    labels = np.array([0] * 9 + [1])
    result = ev.zero_shot("x", torch.randn(10, 4), F.normalize(torch.randn(2, 4), dim=-1),
                          labels, ["a", "b"])
    assert result.chance == 0.9


def test_retrieval_and_agreement() -> None:
    a = torch.randn(50, 8)
    r = ev.retrieval(a, a + 0.01 * torch.randn(50, 8))
    assert r["R@1"] == 1.0 and r["R@5_reverse"] == 1.0 and r["chance_R@1"] == 0.02
    r = ev.retrieval(a, torch.randn(50, 8))
    assert r["R@1"] < 0.2
    same = ev.agreement(np.array([0, 1, 2, 1]), np.array([0, 1, 2, 1]), 3)
    assert same["agreement"] == 1.0 and 0 < same["chance"] < 1


def test_plot_writes_pngs(tmp_path) -> None:
    centres, labels, emb = _clustered(5, 3, 0.5, seed=1)
    result = ev.zero_shot("depth", emb, centres, labels, ["walking", "running", "idle"])
    paths = ev.plot(result, tmp_path)
    assert [p.name for p in paths] == ["confusion-depth.png", "per-class-depth.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
