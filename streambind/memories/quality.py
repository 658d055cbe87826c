"""Retrieval quality and few-shot labels on the synthetic world, whose activities are known.

Held-out world windows (a seed neither the world model's training nor its evaluation used)
are rendered by the world's renderers, featurized by the stream's featurizers, embedded by
the model and stored as memories, one device per activity segment. Queries then go through
the product's own search (:class:`streambind.memories.search.Memories`) and every hit is
judged by the activity of its window:

- **text**: each prompt of each activity, within each modality (text -> vision is how the
  world model's CLIP stage was trained; text -> audio is emergent, through vision);
- **audio file**: a fresh clip of each activity from the world's audio renderer, written as
  a 16-bit ``.wav`` and read back by the search path, against audio and vision windows;
- **stored window** (``--like``): a stored window of each activity; hits from the example's
  own segment (its device) are left out, since they are the same scene a second later;
- **arithmetic**: a stored window of activity A, minus the text of A, plus the text of B,
  judged for B (and beside it: the window alone, judged for B, and the sum judged for A).

Precision@k is the share of the k hits (windows, not merged moments) whose activity is the
target; chance is that activity's share of the searched windows. Few-shot labels
(:mod:`streambind.memories.fewshot`): activities' prototypes from k stored windows of other
segments, alone and mixed with the prompts, against zero-shot prompts alone; repeated over
several random draws of examples.
"""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streambind.memories import fewshot
from streambind.memories.query import QueryItem
from streambind.memories.rows import Memory, memory_table
from streambind.memories.search import Memories
from streambind.memories.store import Filter, Store, unit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityConfig:
    """Sizes of one quality run."""

    segments_per_class: int = 6
    windows_per_segment: int = 3
    seed: int = 2000  # world training uses 0, its evaluation 1000
    modalities: tuple[str, ...] = ("vision", "audio")
    k: int = 10
    audio_files_per_class: int = 2
    likes_per_class: int = 2
    arithmetic_pairs: int = 24
    shots: tuple[int, ...] = (1, 2, 4, 8)
    draws: int = 5
    text_weight: float = 1.0


@dataclass
class WorldMemories:
    """The stored world windows and what is known about each."""

    memories: Memories
    classes: tuple[str, ...]
    prompts: list[list[str]]
    activity: dict[str, int] = field(default_factory=dict)  # window_id -> class index
    device: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)  # modality -> ids, data order
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (N, D)
    labels: np.ndarray | None = None  # (N,) class of each moment
    segments: np.ndarray | None = None  # (N,) segment of each moment


def _embed(runner: object, modality: str, inputs: object, chunk: int = 32) -> np.ndarray:
    import torch

    parts = [runner.embed(modality, inputs[i:i + chunk].float())
             for i in range(0, len(inputs), chunk)]
    return unit(torch.cat(parts).float().numpy())


def store_world(runner: object, store: Store, cfg: QualityConfig) -> WorldMemories:
    """Render, featurize, embed and store the held-out world windows."""
    import time

    from streambind.stream.ids import window_id
    from streambind.world import train_data

    data = train_data.generate(cfg.segments_per_class, cfg.windows_per_segment, cfg.seed,
                               tuple(cfg.modalities))
    model = runner.model_name
    world = WorldMemories(Memories(store, model, runner=runner), data.classes,
                          train_data.prompts(), labels=data.labels,
                          segments=np.arange(len(data)) // cfg.windows_per_segment)
    rows = []
    for m in cfg.modalities:
        vectors = _embed(runner, m, data.inputs[m])  # (N, D)
        world.vectors[m], world.ids[m] = vectors, []
        for i in range(len(data)):
            device = f"world-{world.segments[i]:03d}"
            start, end = int(data.start_ns[i]), int(data.end_ns[i])
            wid = window_id(device, m, start, end, model)
            world.ids[m].append(wid)
            world.activity[wid], world.device[wid] = int(data.labels[i]), device
            rows.append(Memory(wid, device, m, start, end, model, vectors[i]))
    store.upsert(model, memory_table(rows, time.time_ns()))
    return world


def _precision(world: WorldMemories, items: list[QueryItem], modality: str, target: int,
               k: int, exclude_device: str | None = None) -> float:
    extra = 0 if exclude_device is None else 2 * len(world.labels)  # room to drop a device
    moments = world.memories.search(items, where=Filter(modalities=(modality,)),
                                    k=k + min(extra, 64), merge=False)
    ids = [m.best.window_id for m in moments if m.best.device_id != exclude_device][:k]
    return sum(world.activity[w] == target for w in ids) / k


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM mono ``.wav`` of float samples in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return path


def _summary(values: list[float], chance: float) -> dict:
    return {"p_at_k": round(float(np.mean(values)), 4), "chance": round(chance, 4),
            "queries": len(values)}


def retrieval_report(world: WorldMemories, cfg: QualityConfig, wav_dir: Path) -> dict:
    """Precision@k of text, audio-file, stored-window and arithmetic queries vs chance."""
    from streambind.world.render import render_window

    rng = np.random.default_rng(cfg.seed + 7)
    chance = {c: float(np.mean(world.labels == c)) for c in range(len(world.classes))}
    mean_chance = float(np.mean(list(chance.values())))
    mods = cfg.modalities
    report: dict = {"k": cfg.k, "classes": len(world.classes), "text": {}, "per_activity": {}}
    for m in mods:  # text -> modality, every prompt of every activity
        values, per = [], {}
        for c, prompts in enumerate(world.prompts):
            ps = [_precision(world, [QueryItem("text", p)], m, c, cfg.k) for p in prompts]
            per[world.classes[c]] = round(float(np.mean(ps)), 3)
            values += ps
        report["text"][m] = _summary(values, mean_chance)
        report["per_activity"][m] = per
    if "audio" in mods:  # an audio file rendered fresh by the world, through the wav reader
        found: dict[str, list[float]] = {m: [] for m in mods}
        for c, name in enumerate(world.classes):
            for j in range(cfg.audio_files_per_class):
                clip = render_window("audio", name, rng)
                path = write_wav(wav_dir / f"query-{c:02d}-{j}.wav", clip.data,
                                 int(clip.sample_rate))
                for m in mods:
                    found[m].append(_precision(world, [QueryItem("audio", path)], m, c, cfg.k))
        report["audio_file"] = {f"audio->{m}": _summary(v, mean_chance)
                                for m, v in found.items()}
    report["like"] = {}
    for src in mods:  # a stored window, other segments only
        found = {m: [] for m in mods}
        for c in range(len(world.classes)):
            pool = [w for w, lab in zip(world.ids[src], world.labels, strict=True) if lab == c]
            for wid in rng.choice(pool, size=min(cfg.likes_per_class, len(pool)), replace=False):
                for m in mods:
                    found[m].append(_precision(world, [QueryItem("like", str(wid))], m, c, cfg.k,
                                               exclude_device=world.device[str(wid)]))
        for m, v in found.items():
            report["like"][f"{src}->{m}"] = _summary(v, mean_chance)
    report["arithmetic"] = {}
    for m in mods:  # window of A - text A + text B -> B
        to_b, alone_b, still_a = [], [], []
        n = len(world.classes)
        for _ in range(cfg.arithmetic_pairs):
            a, b = rng.choice(n, size=2, replace=False)
            pool = [w for w, lab in zip(world.ids[m], world.labels, strict=True) if lab == a]
            wid = str(rng.choice(pool))
            sum_items = [QueryItem("like", wid), QueryItem("text", world.prompts[b][0]),
                         QueryItem("text", world.prompts[a][0], -1.0)]
            to_b.append(_precision(world, sum_items, m, int(b), cfg.k))
            alone_b.append(_precision(world, [QueryItem("like", wid)], m, int(b), cfg.k))
            still_a.append(_precision(world, sum_items, m, int(a), cfg.k))
        report["arithmetic"][m] = {**_summary(to_b, mean_chance),
                                   "window_alone_p_at_k_for_b": round(float(np.mean(alone_b)), 4),
                                   "sum_p_at_k_for_a": round(float(np.mean(still_a)), 4)}
    return report


def fewshot_report(world: WorldMemories, runner: object, cfg: QualityConfig) -> dict:
    """k-shot label accuracy (examples alone, examples + prompts) vs zero-shot prompts."""
    rng = np.random.default_rng(cfg.seed + 11)
    n = len(world.classes)
    prompt_vecs = {}
    for c, name in enumerate(world.classes):  # each activity's prompts, averaged (zero-shot)
        emb = np.asarray(runner.embed_texts(world.prompts[c]).float().numpy())
        prompt_vecs[name] = unit(unit(emb).mean(axis=0))
    # Examples come from the first half of each activity's segments, tests from the rest.
    support = np.zeros(len(world.labels), dtype=bool)
    for c in range(n):
        segs = np.unique(world.segments[world.labels == c])
        support |= np.isin(world.segments, segs[: max(1, len(segs) // 2)])
    test = ~support
    report: dict = {"chance": round(1.0 / n, 4), "test_windows": int(test.sum()),
                    "draws": cfg.draws, "text_weight": cfg.text_weight, "modalities": {}}
    zero = fewshot.label_vectors(world.classes, prompts=prompt_vecs)
    for m in cfg.modalities:
        truth = world.labels[test]
        zero_acc = float(np.mean(fewshot.classify(world.vectors[m][test], zero) == truth))
        row: dict = {"zero_shot": round(zero_acc, 4), "shots": {}}
        for k in cfg.shots:
            alone, mixed = [], []
            for _ in range(cfg.draws):
                examples = {}
                for c, name in enumerate(world.classes):
                    pool = [i for i in np.flatnonzero(support & (world.labels == c))]
                    picks = rng.choice(pool, size=min(k, len(pool)), replace=False)
                    ids = [world.ids[m][i] for i in picks]  # "window ids from a search"
                    examples[name] = fewshot.examples_from_store(
                        world.memories.store, world.memories.model, ids)
                for out, weight in ((alone, 0.0), (mixed, cfg.text_weight)):
                    labels = fewshot.label_vectors(world.classes, examples, prompt_vecs, weight)
                    pred = fewshot.classify(world.vectors[m][test], labels)
                    out.append(float(np.mean(pred == truth)))
            row["shots"][str(k)] = {
                "examples": round(float(np.mean(alone)), 4),
                "examples_std": round(float(np.std(alone)), 4),
                "examples_and_prompts": round(float(np.mean(mixed)), 4),
                "examples_and_prompts_std": round(float(np.std(mixed)), 4)}
        report["modalities"][m] = row
    return report


def evaluate(runner: object, store: Store, cfg: QualityConfig, wav_dir: Path) -> dict:
    """Store the world and measure retrieval and few-shot labels; a JSON-ready report."""
    world = store_world(runner, store, cfg)
    return {"model": runner.model_name, "windows_per_modality": len(world.labels),
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in cfg.__dict__.items()},
            "retrieval": retrieval_report(world, cfg, Path(wav_dir)),
            "fewshot": fewshot_report(world, runner, cfg)}


def format_report(report: dict) -> str:
    """The report as text tables."""
    r = report["retrieval"]
    lines = [f"model {report['model']}: {report['windows_per_modality']} held-out windows per "
             f"modality, {r['classes']} activities; precision@{r['k']} (chance)"]

    def row(name: str, s: dict, extra: str = "") -> None:
        lines.append(f"  {name:<26} {s['p_at_k']:.3f}  ({s['chance']:.3f}, {s['queries']} "
                     f"queries){extra}")

    for m, s in r["text"].items():
        row(f"text -> {m}", s)
        per = r["per_activity"][m]
        lines.append("    per activity: " + ", ".join(f"{a} {p:.2f}" for a, p in per.items()))
    for name, s in r.get("audio_file", {}).items():
        row(f"audio file: {name}", s)
    for name, s in r["like"].items():
        row(f"stored window: {name}", s)
    for m, s in r["arithmetic"].items():
        row(f"window A - text A + text B ({m})", s,
            f"; window alone finds B {s['window_alone_p_at_k_for_b']:.3f}, sum still finds A "
            f"{s['sum_p_at_k_for_a']:.3f}")
    f = report["fewshot"]
    lines.append(f"few-shot label accuracy on {f['test_windows']} windows of other segments "
                 f"(chance {f['chance']:.3f}, mean of {f['draws']} draws; examples | "
                 f"examples + prompts x{f['text_weight']})")
    for m, res in f["modalities"].items():
        shots = "  ".join(f"{k}-shot {v['examples']:.3f} | {v['examples_and_prompts']:.3f}"
                          for k, v in res["shots"].items())
        lines.append(f"  {m:<7} zero-shot {res['zero_shot']:.3f}  {shots}")
    return "\n".join(lines)
