"""Zero-shot label sets: parsing, prompt embeddings, scoring, hysteresis and fusion.

A label set is the JSON/YAML document of the ``streambind.labels`` topic::

    {"name": "home", "version": 3,
     "labels": [{"name": "glass breaking", "prompts": ["glass breaking", "a window shattering"],
                 "modalities": ["audio", "vision"], "threshold": 0.3}]}

Scoring follows CLIP zero-shot classification: every prompt is wrapped in each of the
modality's templates ("the sound of {}."), the text embeddings are L2-normalized, averaged
per label and normalized again; a window's score for a label is the softmax over the
labels that apply to its modality of ``LOGIT_SCALE`` times the cosine similarity. Scores
therefore sum to one within a label set and modality, so a threshold of 0 labels every
window and a threshold of 0.5 keeps only a clear winner. A softmax needs rivals: a set with
one label (a single detector) scores 1 always, so such a set should either add background
labels ("silence", "an empty room") or use ``"scoring": "cosine"``, where the score is the
plain cosine similarity in [-1, 1] and thresholds are absolute (model-specific: calibrate).

A label applies to the modalities it lists; without ``modalities`` it applies to every
modality, sensors bound with ``streambind bind`` included. A bound sensor is named like its
topic (``"modalities": ["wrist"]`` for ``sensors.wrist``); its prompts are embedded as
written (:data:`BOUND_TEMPLATES`), as ``streambind eval`` scores them. A name the model
has no tower for never matches a window (label sets are shared by deployments of
different models), so the schema bounds names by their form only.

Everything here is pure: the label sets in force and their text embeddings are kept by
``streambind.serve.registry``, hysteresis state by the event sink (``serve/events.py``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streambind import MODALITIES
from streambind.errors import ConfigError
from streambind.stream.schemas import load_json

logger = logging.getLogger(__name__)

FUSED = "fused"
LABEL_MODALITIES = (*MODALITIES, FUSED)

LOGIT_SCALE = 100.0
"""CLIP's softmax temperature for zero-shot scores (ImageBind's text tower learns ~100)."""

SCORINGS = ("softmax", "cosine")
LABEL_SET_SCHEMA = "label_set.schema.json"
"""The JSON Schema every label set is checked against (``schemas/``)."""

PROMPT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "vision": ("a photo of {}.", "a video of {}.", "a blurry photo of {}."),
    "audio": ("the sound of {}.", "a recording of {}."),
    "depth": ("a depth image of {}.", "a depth map of {}."),
    "thermal": ("a thermal image of {}.", "an infrared photo of {}."),
    "imu": ("{}.", "a person {}."),
    FUSED: ("{}.",),
}
"""Per-modality prompt templates; each label prompt is wrapped in every template and averaged."""
BOUND_TEMPLATES: tuple[str, ...] = ("{}.",)
"""Templates of a sensor bound by ``streambind bind``: the prompt itself (its tower never saw
text; it sits next to the camera's embedding, which the plain prompt describes)."""


@dataclass(frozen=True)
class Label:
    """One label: its prompts, the modalities it applies to, and its score threshold.

    ``all_modalities``: the document named no modalities, so the label applies to every
    modality, bound sensors included (``modalities`` then lists the built-in ones).
    """

    name: str
    prompts: tuple[str, ...]
    modalities: tuple[str, ...] = LABEL_MODALITIES
    threshold: float = 0.0
    all_modalities: bool = False

    def applies_to(self, modality: str) -> bool:
        """Whether windows of ``modality`` are scored against this label."""
        return modality in self.modalities or self.all_modalities


@dataclass(frozen=True)
class LabelSet:
    """A named, versioned set of labels (one ``streambind.labels`` record)."""

    name: str
    version: int
    labels: tuple[Label, ...]
    top_k: int = 5
    hysteresis: float = 0.05
    scoring: str = "softmax"

    @classmethod
    def from_dict(cls, doc: object) -> LabelSet:
        """Validate a decoded label-set document against ``schemas/label_set.schema.json``;
        raises ``ConfigError`` naming the first problem (where and what)."""
        valid = validate_label_set_doc(doc)
        name = valid["name"]
        label_names = [item["name"] for item in valid["labels"]]
        if len(set(label_names)) != len(label_names):
            raise ConfigError(f"label set {name!r}: duplicate label names")
        labels = tuple(
            Label(
                item["name"],
                tuple(item.get("prompts", [item["name"]])),
                tuple(item.get("modalities", LABEL_MODALITIES)),
                float(item.get("threshold", 0.0)),
                "modalities" not in item,
            )
            for item in valid["labels"]
        )
        return cls(
            name,
            int(valid["version"]),  # JSON Schema counts 3.0 as an integer
            labels,
            int(valid.get("top_k", 5)),
            float(valid.get("hysteresis", 0.05)),
            valid.get("scoring", "softmax"),
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> LabelSet:
        """Parse a ``streambind.labels`` record value (UTF-8 JSON)."""
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"label set is not valid JSON: {exc!s:.200}") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_file(cls, path: str | Path) -> LabelSet:
        """Read a label set from a YAML or JSON file."""
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
        return cls.from_dict(doc)

    def to_dict(self) -> dict:
        """The document form, as published on ``streambind.labels``."""
        return {
            "name": self.name,
            "version": self.version,
            "top_k": self.top_k,
            "hysteresis": self.hysteresis,
            "scoring": self.scoring,
            "labels": [
                {
                    "name": label.name,
                    "prompts": list(label.prompts),
                    **({} if label.all_modalities else {"modalities": list(label.modalities)}),
                    "threshold": label.threshold,
                }
                for label in self.labels
            ],
        }

    def labels_for(self, modality: str) -> tuple[Label, ...]:
        """The labels that apply to ``modality``."""
        return tuple(label for label in self.labels if label.applies_to(modality))


@functools.cache
def _label_set_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_json(LABEL_SET_SCHEMA))


def validate_label_set_doc(doc: object) -> Mapping[str, Any]:
    """Check a decoded document against the label-set JSON Schema and return it;
    ``ConfigError`` if it does not conform.

    The message names the set (when it has a usable name), the path of the offending value
    (``labels/0/modalities/0``) and what is wrong with it, cut to a readable length.
    """
    from jsonschema.exceptions import best_match

    error = best_match(_label_set_validator().iter_errors(doc))
    if error is None:
        return doc  # type: ignore[return-value]  # the schema says it is an object
    name = doc.get("name") if isinstance(doc, Mapping) else None
    where = "/".join(str(part) for part in error.absolute_path) or "document"
    subject = f"label set {name!r}" if isinstance(name, str) and name else "label set"
    raise ConfigError(f"{subject}: {where}: {error.message:.300}")


def prompt_texts(label: Label, modality: str) -> list[str]:
    """Every text the label is embedded from for ``modality``: prompts × templates."""
    templates = PROMPT_TEMPLATES.get(modality, BOUND_TEMPLATES)
    return [template.format(prompt) for prompt in label.prompts for template in templates]


def label_text_matrix(
    label_set: LabelSet, modality: str, embed_text: Callable[[list[str]], torch.Tensor]
) -> torch.Tensor:
    """(L, D) unit-norm class embeddings of the labels for ``modality``, CLIP-style averaged.

    ``embed_text`` maps N strings to (N, D) embeddings; it is called once for all prompts.
    """
    labels = label_set.labels_for(modality)
    texts_per_label = [prompt_texts(label, modality) for label in labels]
    flat = [text for texts in texts_per_label for text in texts]
    if not flat:
        return torch.empty(0, 0)
    embeddings = torch.nn.functional.normalize(embed_text(flat).float(), dim=-1)  # (N, D)
    rows, start = [], 0
    for texts in texts_per_label:
        mean = embeddings[start : start + len(texts)].mean(dim=0)
        rows.append(torch.nn.functional.normalize(mean, dim=-1))
        start += len(texts)
    return torch.stack(rows)  # (L, D)


def zero_shot_scores(
    embeddings: torch.Tensor, label_matrix: torch.Tensor, scoring: str = "softmax"
) -> torch.Tensor:
    """(B, L) scores of window embeddings (B, D) against label embeddings (L, D).

    ``softmax``: CLIP zero-shot probabilities over the labels; ``cosine``: similarities.
    """
    windows = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    cosine = windows @ label_matrix.T  # (B, L)
    if scoring == "cosine":
        return cosine
    return torch.softmax(LOGIT_SCALE * cosine, dim=-1)


def fuse(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """ImageBind embedding arithmetic: the normalized sum of normalized embeddings (D,)."""
    stacked = torch.nn.functional.normalize(torch.stack([e.float() for e in embeddings]), dim=-1)
    return torch.nn.functional.normalize(stacked.sum(dim=0), dim=-1)


def hysteresis(
    scored: Iterable[tuple[Label, float]], was_on: Collection[str], margin: float
) -> list[tuple[str, float]]:
    """The (label, score) pairs on for one window, best first, given the labels that were on
    for the previous window of the same stream (device, modality, label set).

    A label switches on when its score reaches its threshold and stays on until the score
    falls below ``threshold - margin``; the names returned are the next window's ``was_on``.
    Pure: the state lives with the caller (the event sink, which keeps it for replays).
    """
    on = [
        (label.name, score)
        for label, score in scored
        if score >= (label.threshold - margin if label.name in was_on else label.threshold)
    ]
    on.sort(key=lambda pair: (-pair[1], pair[0]))
    return on
