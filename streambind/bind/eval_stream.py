"""Evaluating a bound sensor on your own recording: its windows from Kafka against labels.

``streambind eval --model DIR --modality wrist --bootstrap B --truth labels.jsonl`` reads
``sensors.wrist`` (or ``--topic``) from its start, cuts and featurizes the windows exactly
as ``streambind run`` does, labels each with the activity of a labels file (JSON lines
``{"device_id", "start_ns", "end_ns", "activity"}``, the format ``streambind simulate
--truth`` writes: one line per segment) and scores them against the label set (``--labels
FILE``; default: one label per activity, prompted by its name). Zero-shot top-1 is
reported beside chance (the majority class share) and the untrained tower of the same
config, per class too, and ``--plot DIR`` draws the confusion matrix.

A window takes the activity that covers most of it; windows with less than half of their
span covered by a labelled segment, or labelled with an activity the label set lacks, are
left out (and counted).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from streambind.errors import ConfigError, FeatureError
from streambind.labels import LabelSet, label_text_matrix
from streambind.world.truth import Segment

logger = logging.getLogger(__name__)

MAX_TRUTH_LINES = 1_000_000
MAX_LINE_CHARS = 4096


def read_truth(path: str | Path) -> list[Segment]:
    """The segments of a labels file; ``ConfigError`` naming the first bad line."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if n > MAX_TRUTH_LINES:
                raise ConfigError(f"{path}: more than {MAX_TRUTH_LINES} lines")
            if not line.strip():
                continue
            try:
                if len(line) > MAX_LINE_CHARS:
                    raise ValueError(f"longer than {MAX_LINE_CHARS} characters")
                doc = json.loads(line)
                seg = Segment(str(doc["device_id"]), int(doc["start_ns"]), int(doc["end_ns"]),
                              str(doc["activity"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{n}: not a labels line ({exc})") from exc
            if seg.end_ns <= seg.start_ns:
                raise ConfigError(f"{path}:{n}: end_ns must be after start_ns")
            out.append(seg)
    if not out:
        raise ConfigError(f"{path}: no labelled segments")
    return out


def window_activity(segments: list[Segment], device_id: str, start_ns: int,
                    end_ns: int) -> str | None:
    """The activity covering most of ``[start_ns, end_ns)`` on ``device_id``, or None when
    labelled segments cover less than half of it."""
    cover: dict[str, int] = {}
    for s in segments:
        if s.device_id == device_id:
            overlap = min(s.end_ns, end_ns) - max(s.start_ns, start_ns)
            if overlap > 0:
                cover[s.activity] = cover.get(s.activity, 0) + overlap
    if not cover or sum(cover.values()) * 2 < end_ns - start_ns:
        return None
    return max(sorted(cover), key=cover.__getitem__)


def default_label_set(segments: list[Segment], modality: str) -> LabelSet:
    """One label per activity of the labels file, prompted by its name."""
    names = sorted({s.activity for s in segments})
    return LabelSet.from_dict({"name": "truth", "version": 1, "labels": [
        {"name": n, "modalities": [modality]} for n in names]})


def evaluate_stream(model, modality: str, bootstrap: str, topic: str,  # noqa: ANN001
                    segments: list[Segment], label_set: LabelSet | None = None, *,
                    timeout_s: float = 120.0, controls: bool = True,
                    plot_dir: str | Path | None = None) -> dict:
    """Zero-shot top-1 of ``model``'s bound tower ``modality`` on ``topic``'s windows."""
    from streambind.bind import eval as ev
    from streambind.bind.evaluate import untrained_tower
    from streambind.bind.pairs import read_sensor_windows
    from streambind.model import tokenize
    from streambind.stream import custom

    cfg = next((c for c in model.config.extra if c.modality == modality), None)
    if cfg is None or modality not in model.towers:
        raise ConfigError(f"the model has no bound {modality!r} tower")
    labels = label_set or default_label_set(segments, modality)
    classes = [lab.name for lab in labels.labels_for(modality)]
    if not classes:
        raise ConfigError(f"label set {labels.name!r} has no label for {modality!r}")
    windows = read_sensor_windows(bootstrap, topic, cfg, timeout_s)
    inputs, truth, unlabelled, bad = [], [], 0, 0
    for w in windows:
        activity = window_activity(segments, w.device_id, w.start_ns, w.end_ns)
        if activity not in classes:
            unlabelled += 1
            continue
        try:
            inputs.append(custom.tower_input(w, cfg))
        except FeatureError:
            bad += 1
            continue
        truth.append(classes.index(activity))
    if not inputs:
        raise ConfigError(f"no labelled {modality} windows in {topic} "
                          f"({len(windows)} windows, {unlabelled} without a label)")
    x = torch.stack(inputs)  # (N, *input_shape)
    y = np.asarray(truth)

    def text(prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return model({"text": tokenize(prompts)})["text"]

    class_emb = label_text_matrix(labels, modality, text)  # (C, E), as run scores them

    def score(m) -> ev.ZeroShot:  # noqa: ANN001
        with torch.no_grad():
            emb = torch.cat([m({modality: x[i : i + 64]})[modality] for i in range(0, len(x), 64)])
        return ev.zero_shot(modality, emb, class_emb, y, classes)

    result = score(model)
    report = {**result.as_dict(), "windows": len(windows), "unlabelled_windows": unlabelled,
              "bad_windows": bad, "uniform_chance": 1 / len(classes), "topic": topic}
    if controls:
        report["untrained_top1"] = score(untrained_tower(model, modality)).top1
    if plot_dir is not None:
        report["plots"] = [str(p) for p in ev.plot(result, plot_dir)]
    return report


def format_stream_report(report: dict) -> str:
    """A readable block: top-1 beside chance and the untrained tower, then per class."""
    lines = [f"{report['modality']} on {report['topic']}: {report['n']} labelled windows "
             f"({report['unlabelled_windows']} without a label, {report['bad_windows']} bad)",
             f"  zero-shot top-1 {report['top1']:.3f}   chance {report['chance']:.3f} "
             f"(uniform {report['uniform_chance']:.3f})"
             + (f"   untrained tower {report['untrained_top1']:.3f}"
                if "untrained_top1" in report else "")]
    for name, acc in report["per_class"].items():
        lines.append(f"    {name:<28} {'-' if acc is None else f'{acc:.2f}'}")
    return "\n".join(lines)
