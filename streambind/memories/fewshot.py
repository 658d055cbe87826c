"""Labels by example: a label's prototype from stored windows (or any embeddings) and prompts.

ImageBind's embeddings make strong few-shot classifiers; a label can therefore be defined by
a few examples as well as by prompts. The examples' unit embeddings are averaged into a
prototype, and the prompts' text embedding is mixed in (``text_weight``; 0: examples only):

    label vector = normalize(normalize(mean_i normalize(e_i)) + text_weight * normalize(t))

A window is labelled by its cosine to each label vector, as zero-shot labels are by the
prompt embedding alone. :func:`label_vectors` builds them; :func:`examples_from_store`
fetches the examples' vectors by window id (ids from a search).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from streambind.errors import StreambindError
from streambind.memories.store import Store, unit


class FewShotError(StreambindError):
    """A label's examples cannot be found or combined."""


def prototype(examples: np.ndarray | None, prompt: np.ndarray | None,
              text_weight: float = 1.0) -> np.ndarray:
    """(D,) unit label vector from examples (K, D) and/or a prompt embedding (D,)."""
    parts = []
    if examples is not None and len(examples):
        parts.append(unit(unit(np.asarray(examples, np.float32)).mean(axis=0)))
    if prompt is not None and (text_weight > 0 or not parts):
        parts.append((text_weight if parts else 1.0) * unit(np.asarray(prompt, np.float32)))
    if not parts:
        raise FewShotError("a label needs at least one example or a prompt")
    total = np.sum(parts, axis=0)
    if float(np.linalg.norm(total)) < 1e-6:
        raise FewShotError("the label's examples and prompt cancel out")
    return unit(total)


def label_vectors(
    names: Sequence[str],
    examples: Mapping[str, np.ndarray] | None = None,
    prompts: Mapping[str, np.ndarray] | None = None,
    text_weight: float = 1.0,
) -> np.ndarray:
    """(L, D) label vectors in ``names`` order (see the module docstring)."""
    examples, prompts = examples or {}, prompts or {}
    return np.stack([prototype(examples.get(n), prompts.get(n), text_weight) for n in names])


def classify(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) index of the best label (cosine) for each of ``vectors`` (N, D)."""
    return np.argmax(unit(vectors) @ unit(labels).T, axis=1)


def examples_from_store(store: Store, model: str, window_ids: Sequence[str]) -> np.ndarray:
    """(K, D) stored vectors of these windows; a missing id is an error."""
    rows = store.get(model, list(window_ids))
    found = dict(zip(rows.column("window_id").to_pylist(), rows.column("vector").to_pylist(),
                     strict=True)) if rows.num_rows else {}
    missing = [w for w in window_ids if w not in found]
    if missing:
        raise FewShotError(f"{len(missing)} example windows are not stored: {missing[:3]}")
    return np.asarray([found[w] for w in window_ids], dtype=np.float32)
