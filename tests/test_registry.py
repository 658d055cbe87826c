"""The label registry: text embeddings are prepared off the scoring path; a new version
takes effect once they exist, the old one stays in force meanwhile."""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch
from prometheus_client import REGISTRY

from streambind.errors import ServeError
from streambind.labels import LabelSet
from streambind.serve.registry import LabelRegistry

DOC = {"name": "home", "version": 1,
       "labels": [{"name": "dog", "prompts": ["a dog barking"]}, {"name": "cat"}]}


def hashed(texts: list[str], dim: int = 16) -> torch.Tensor:
    """A stand-in text tower: a fixed pseudo-random vector per distinct string."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows)


class GatedTower:
    """A text tower that blocks (an embedder outage) until opened, or fails when told."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.fail: Exception | None = None
        self.calls = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        self.entered.set()
        if not self.open.wait(30):
            raise TimeoutError("never opened")
        if self.fail is not None:
            raise self.fail
        return hashed(texts)


def version(doc: dict, v: int, **change) -> LabelSet:
    return LabelSet.from_dict({**doc, "version": v, **change})


def in_force(registry: LabelRegistry) -> dict[str, int]:
    return {s.name: s.version for s in registry.label_sets()}


def window() -> torch.Tensor:
    return hashed(["the sound of a dog barking."])[0]


def test_update_prepares_every_modality_once_and_scoring_never_embeds():
    calls = []

    def tower(texts):
        calls.append(len(texts))
        return hashed(texts)

    registry = LabelRegistry(tower)
    assert registry.update(version(DOC, 1))
    assert len(calls) == 6  # one request per modality the labels apply to (5 + fused)
    for _ in range(3):
        ((label_set, scored),) = registry.score("audio", window())
    assert len(calls) == 6
    assert label_set.version == 1 and [label.name for label, _ in scored] == ["dog", "cat"]
    assert scored[0][1] > scored[1][1]
    assert not registry.update(version(DOC, 1))  # same version: ignored
    assert registry.score("audio", window())[0][0].version == 1


def test_a_new_version_waits_for_its_embeddings_and_the_old_stays_in_force():
    tower = GatedTower()
    tower.open.set()
    registry = LabelRegistry(tower)
    registry.update(version(DOC, 1))
    tower.open.clear()
    tower.entered.clear()
    try:
        assert registry.submit(version(DOC, 2, labels=[{"name": "rain"}, {"name": "wind"}]))
        assert tower.entered.wait(10)  # the preparation thread is stuck in the text tower
        assert not registry.submit(version(DOC, 2))  # already pending
        assert registry.pending() == {"home": 2}
        assert in_force(registry) == {"home": 1}
        ((label_set, scored),) = registry.score("audio", window())  # returns at once
        assert label_set.version == 1 and {label.name for label, _ in scored} == {"dog", "cat"}
        tower.open.set()
        assert registry.settle(10)
        assert in_force(registry) == {"home": 2} and registry.pending() == {}
        ((label_set, scored),) = registry.score("audio", window())
        assert {label.name for label, _ in scored} == {"rain", "wind"}
    finally:
        tower.open.set()
        registry.stop()


def test_a_newer_version_or_a_tombstone_during_preparation_wins():
    tower = GatedTower()
    registry = LabelRegistry(tower)
    try:
        registry.submit(version(DOC, 2))
        assert tower.entered.wait(10)
        registry.submit(version(DOC, 3))  # arrives while 2 is being prepared
        tower.open.set()
        assert registry.settle(10)
        assert in_force(registry) == {"home": 3}  # 2 was never installed after 3

        tower.open.clear()
        tower.entered.clear()
        registry.submit(version(DOC, 4))
        assert tower.entered.wait(10)
        assert registry.remove("home")  # the tombstone applies at once...
        assert in_force(registry) == {} and registry.pending() == {}
        tower.open.set()
        registry.settle(10)
        assert in_force(registry) == {}  # ...and version 4 never comes into force
    finally:
        tower.open.set()
        registry.stop()


def test_a_version_the_embedder_refuses_is_dropped_and_the_thread_lives_on():
    failed = ("streambind_label_records_total", {"outcome": "failed"})
    before = REGISTRY.get_sample_value(*failed) or 0.0
    tower = GatedTower()
    tower.open.set()
    registry = LabelRegistry(tower)
    registry.update(version(DOC, 1))
    tower.fail = ServeError("this model has no text tower")
    try:
        registry.submit(version(DOC, 2))
        assert registry.settle(10)
        assert in_force(registry) == {"home": 1} and registry.alive
        assert REGISTRY.get_sample_value(*failed) == before + 1
        tower.fail = None
        registry.submit(version(DOC, 3))
        assert registry.settle(10) and in_force(registry) == {"home": 3}
    finally:
        registry.stop()


@pytest.mark.parametrize("modality", ["imu", "fused"])
def test_sets_without_labels_for_a_modality_are_not_scored_for_it(modality):
    registry = LabelRegistry(hashed)
    registry.update(version(DOC, 1, labels=[{"name": "dog", "modalities": ["audio"]}]))
    assert registry.score(modality, window()) == []
    assert len(registry.score("audio", window())) == 1
