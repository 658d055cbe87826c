"""The label sets in force and their text embeddings, prepared off the publishing path.

A label set is scored against window embeddings through its per-modality (L, D) matrices
of text embeddings, which need the embedder's text tower: a remote call that may be slow
or fail for minutes during an embedder outage. So no scoring call ever embeds text: a new
version is *submitted*, a background thread (``label-prepare``) computes its matrices, and
only then is the version put in force, atomically. Until that has happened the previous
version stays in force and windows keep being labelled with it; the consumer thread and
the embed worker never wait for the text tower.

``update`` prepares in the calling thread instead (the labels file at start, tests).
A tombstone (``remove``) applies at once, and cancels a pending version of that name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from streambind import metrics
from streambind.labels import LABEL_MODALITIES, Label, LabelSet, label_text_matrix

logger = logging.getLogger(__name__)

EmbedText = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class PreparedSet:
    """A label set with its (L, D) text matrix for every modality it has labels for."""

    label_set: LabelSet
    matrices: Mapping[str, torch.Tensor]


def prepare(
    label_set: LabelSet, embed_text: EmbedText, modalities: tuple[str, ...] = LABEL_MODALITIES
) -> PreparedSet:
    """Compute the text matrices of every modality of ``modalities`` (default: the built-in
    ones; add the model's bound sensors) that ``label_set`` labels (remote calls)."""
    matrices = {
        modality: label_text_matrix(label_set, modality, embed_text)
        for modality in modalities
        if label_set.labels_for(modality)
    }
    return PreparedSet(label_set, matrices)


class LabelRegistry:
    """Thread-safe registry of prepared label sets; newer versions replace older ones."""

    def __init__(self, embed_text: EmbedText, *, bound: tuple[str, ...] = ()):
        self._embed_text = embed_text
        # Label sets are scored for the built-in modalities and the model's bound sensors.
        self._modalities = (*LABEL_MODALITIES, *(m for m in bound if m not in LABEL_MODALITIES))
        self._sets: dict[str, PreparedSet] = {}
        self._pending: dict[str, LabelSet] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- changes ----------------------------------------------------------------------

    def update(self, label_set: LabelSet) -> bool:
        """Prepare ``label_set`` in this thread and put it in force if it is newer than the
        version in force; returns whether it was."""
        if not self._is_new(label_set):
            return False
        prepared = prepare(label_set, self._embed_text, self._modalities)
        with self._lock:
            if not self._newer_than_in_force(label_set):
                return False
            self._install(prepared)
        return True

    def submit(self, label_set: LabelSet) -> bool:
        """Queue ``label_set`` for preparation if it is newer than both the version in force
        and the one pending; returns whether it was queued. It takes effect once its text
        embeddings exist (``pending`` lists what is waiting)."""
        with self._lock:
            if not self._newer_than_in_force(label_set):
                return False
            waiting = self._pending.get(label_set.name)
            if waiting is not None and waiting.version >= label_set.version:
                return False
            self._pending[label_set.name] = label_set
            self._ensure_thread()
            self._wake.notify_all()
        metrics.LABEL_SETS_PENDING.set(len(self._pending))
        return True

    def remove(self, name: str) -> bool:
        """Take the set ``name`` out of force and drop a pending version of it (a tombstone);
        returns whether there was either."""
        with self._lock:
            removed = self._sets.pop(name, None)
            cancelled = self._pending.pop(name, None)
        metrics.LABEL_SETS_PENDING.set(len(self._pending))
        if removed is not None:
            logger.info("label set %s version %d removed", name, removed.label_set.version)
        return removed is not None or cancelled is not None

    # -- reading ----------------------------------------------------------------------

    def label_sets(self) -> list[LabelSet]:
        """The label sets in force, by name."""
        with self._lock:
            return [self._sets[name].label_set for name in sorted(self._sets)]

    def pending(self) -> dict[str, int]:
        """Versions submitted whose text embeddings are not ready yet, by set name."""
        with self._lock:
            return {name: s.version for name, s in sorted(self._pending.items())}

    def score(
        self, modality: str, embedding: torch.Tensor
    ) -> list[tuple[LabelSet, list[tuple[Label, float]]]]:
        """Every set in force with labels for ``modality``: its labels and their scores for
        one window embedding (D,). Pure computation on prepared matrices: never remote."""
        from streambind.labels import zero_shot_scores

        with self._lock:
            prepared = [self._sets[name] for name in sorted(self._sets)]
        results = []
        for entry in prepared:
            matrix = entry.matrices.get(modality)
            if matrix is None:
                continue
            labels = entry.label_set.labels_for(modality)
            scores = zero_shot_scores(embedding[None], matrix, entry.label_set.scoring)[0]
            results.append((entry.label_set, list(zip(labels, scores.tolist(), strict=True))))
        return results

    @property
    def alive(self) -> bool:
        """False once the preparation thread died (it is started by the first ``submit``)."""
        return self.error is None

    def settle(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (tests, start-up); returns whether that happened."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._pending or self._stopping, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the preparation thread (a preparation under way ends with the embed call)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- internals ----------------------------------------------------------------------

    def _is_new(self, label_set: LabelSet) -> bool:
        with self._lock:
            return self._newer_than_in_force(label_set)

    def _newer_than_in_force(self, label_set: LabelSet) -> bool:
        current = self._sets.get(label_set.name)
        return current is None or current.label_set.version < label_set.version

    def _install(self, prepared: PreparedSet) -> None:
        # Caller holds the lock. One dict assignment: a scorer sees the old or the new set.
        self._sets[prepared.label_set.name] = prepared
        waiting = self._pending.get(prepared.label_set.name)
        if waiting is not None and waiting.version <= prepared.label_set.version:
            del self._pending[prepared.label_set.name]
        self._wake.notify_all()
        logger.info(
            "label set %s version %d in force", prepared.label_set.name, prepared.label_set.version
        )

    def _ensure_thread(self) -> None:
        # Caller holds the lock.
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="label-prepare", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._prepare_forever()
        except BaseException as exc:  # noqa: BLE001 - reported through alive / error
            logger.exception("label set preparation stopped")
            self.error = exc

    def _prepare_forever(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                name = min(self._pending)
                label_set = self._pending[name]
            try:
                prepared = prepare(label_set, self._embed_text, self._modalities)
            except Exception as exc:  # noqa: BLE001 - one set must not stop the others
                # The embedder refused (no text tower, stopped): this version cannot apply.
                logger.error("label set %s version %d cannot be prepared: %s",
                             label_set.name, label_set.version, exc)
                metrics.LABEL_RECORDS.labels(outcome="failed").inc()
                with self._lock:
                    if self._pending.get(name) is label_set:
                        del self._pending[name]
                    self._wake.notify_all()
                metrics.LABEL_SETS_PENDING.set(len(self._pending))
                continue
            with self._lock:
                # Install only what is still wanted: not replaced by a newer version or
                # removed by a tombstone while its text embeddings were computed.
                if self._pending.get(name) is label_set and self._newer_than_in_force(label_set):
                    self._install(prepared)
            metrics.LABEL_SETS_PENDING.set(len(self._pending))
