"""Measuring a bound tower: zero-shot top-1, cross-modal retrieval, agreement, plots.

Pure functions over embeddings (tensors in, numbers out); the orchestration that trains
the controls and produces the embeddings is in :mod:`streambind.bind.evaluate`. Every
figure is reported beside chance, because a number alone says nothing about a 12-way task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streambind.bind.recipe import recall_at_k

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZeroShot:
    """Zero-shot classification of one modality's windows against class prompts."""

    modality: str
    top1: float
    chance: float
    n: int
    classes: tuple[str, ...]
    confusion: np.ndarray  # (C, C): rows true class, columns predicted
    predictions: np.ndarray = field(repr=False)  # (N,) predicted class indices

    @property
    def per_class(self) -> np.ndarray:
        """(C,) accuracy per true class (NaN where a class has no window)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, np.diag(self.confusion) / np.maximum(totals, 1), np.nan)

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"modality": self.modality, "top1": self.top1, "chance": self.chance,
                "n": self.n, "per_class": dict(zip(self.classes,
                                                   [_num(x) for x in self.per_class],
                                                   strict=True))}


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def class_embeddings(prompt_embeddings: Sequence[Tensor]) -> Tensor:
    """One unit vector per class: the mean of its normalized prompt embeddings (CLIP's
    prompt ensembling), renormalized. ``prompt_embeddings[c]`` is (P_c, E)."""
    return F.normalize(
        torch.stack([F.normalize(p.float(), dim=-1).mean(0) for p in prompt_embeddings]),
        dim=-1,
    )  # (C, E)


def zero_shot(
    modality: str, embeddings: Tensor, class_emb: Tensor, labels: np.ndarray,
    classes: Sequence[str],
) -> ZeroShot:
    """Top-1 of ``embeddings`` (N, E) against ``class_emb`` (C, E); ``labels`` (N,) ints.

    Chance is the share of the most frequent class (the best constant guess), which is
    1/C for balanced labels and honest for unbalanced ones.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sims = F.normalize(embeddings.float(), dim=-1) @ class_emb.float().T  # (N, C)
    pred = sims.argmax(dim=1).numpy()
    n_classes = len(classes)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    counts = np.bincount(labels, minlength=n_classes)
    n = len(labels)
    return ZeroShot(
        modality=modality,
        top1=float((pred == labels).mean()) if n else float("nan"),
        chance=float(counts.max() / n) if n else float("nan"),
        n=n, classes=tuple(classes), confusion=confusion, predictions=pred,
    )


def retrieval(a: Tensor, b: Tensor) -> dict[str, float]:
    """Cross-modal retrieval between paired rows of ``a`` and ``b`` (N, E), both ways,
    with chance (k/N)."""
    n = a.shape[0]
    ab, ba = recall_at_k(a, b), recall_at_k(b, a)
    return {"R@1": ab[1], "R@5": ab[5], "R@1_reverse": ba[1], "R@5_reverse": ba[5],
            "chance_R@1": 1 / n if n else float("nan"),
            "chance_R@5": min(1.0, 5 / n) if n else float("nan"), "n": n}


def agreement(pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int) -> dict[str, float]:
    """How often two modalities' labels of the same windows agree, beside the agreement
    expected by chance from their label frequencies (the no-ground-truth check)."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if len(pred_a) == 0:
        return {"agreement": float("nan"), "chance": float("nan"), "n": 0}
    pa = np.bincount(pred_a, minlength=n_classes) / len(pred_a)
    pb = np.bincount(pred_b, minlength=n_classes) / len(pred_b)
    return {"agreement": float((pred_a == pred_b).mean()), "chance": float(pa @ pb),
            "n": len(pred_a)}


def plot(result: ZeroShot, out_dir: str | Path, tag: str = "") -> list[Path]:
    """Write ``confusion-<modality>.png`` and ``per-class-<modality>.png`` to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{result.modality}{('-' + tag) if tag else ''}"
    c = len(result.classes)
    totals = np.maximum(result.confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * c, 1.0 + 0.5 * c))
    im = ax.imshow(result.confusion / totals, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(c), result.classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(c), result.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.modality}: zero-shot top-1 {result.top1:.2f} "
                 f"(chance {result.chance:.2f}, n={result.n})", fontsize=9)
    for i in range(c):
        for j in range(c):
            if result.confusion[i, j]:
                ax.text(j, i, str(result.confusion[i, j]), ha="center", va="center",
                        fontsize=6, color="w" if result.confusion[i, j] < totals[i, 0] / 2
                        else "k")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    confusion_path = out / f"confusion-{name}.png"
    fig.savefig(confusion_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * c, 3.5))
    ax.bar(range(c), np.nan_to_num(result.per_class), color="tab:blue")
    ax.axhline(result.chance, color="tab:red", linestyle="--", label="chance")
    ax.axhline(result.top1, color="k", linestyle=":", label="overall")
    ax.set_xticks(range(c), result.classes, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{result.modality}: per-class zero-shot accuracy", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    per_class_path = out / f"per-class-{name}.png"
    fig.savefig(per_class_path, dpi=110)
    plt.close(fig)
    return [confusion_path, per_class_path]
