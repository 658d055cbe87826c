"""The ``Ingest`` deployment: one Kafka consumer-group member per Serve replica.

Each replica runs the streaming core's consumer loop in a thread: decode and validate,
window, featurize on CPU, embed through the ``Embedder`` deployment's handle (one request
per window, batched on the GPU replica), label and publish. More partitions allow more
ingest replicas; more ingest replicas feed more GPU replicas.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streambind.config import AppConfig
from streambind.errors import ServeError
from streambind.labels import LabelSet
from streambind.serve.client import ServeEmbedderClient
from streambind.serve.events import LabelledEventSink
from streambind.serve.label_feed import LabelFeed
from streambind.serve.registry import LabelRegistry
from streambind.serve.replica import embedder_handle, start_replica_metrics
from streambind.tuning import prefer_huge_page_tensors

if TYPE_CHECKING:
    from streambind.stream.runner import StreamRunner

logger = logging.getLogger(__name__)


def ensure_topics(bootstrap_kwargs: Mapping[str, Any], labels_topic: str) -> None:
    """Create the compacted labels topic if missing (the feed needs it to exist)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**bootstrap_kwargs)
    try:
        if labels_topic in admin.list_topics():
            return
        topic = NewTopic(labels_topic, 1, 1, topic_configs={"cleanup.policy": "compact"})
        admin.create_topics([topic])
    except TopicAlreadyExistsError:
        pass  # another replica was first
    finally:
        admin.close()


def bound_towers(info: Mapping[str, Any]) -> dict[str, Any]:
    """The bound towers' configs (name -> config) in the embedder's ``info``."""
    from streambind.model.kinds import tower_config_from_dict

    return {name: tower_config_from_dict(doc)
            for name, doc in (info.get("bound_towers") or {}).items()}


def check_parts(runner: StreamRunner, feed: LabelFeed, registry: LabelRegistry) -> None:
    """Raise ``ServeError`` when the consumer loop failed, or the label feed thread or the
    label preparation thread is gone (the replica would label with outdated sets forever)."""
    if runner.error is not None:
        raise ServeError(f"consumer loop failed: {runner.error}")
    if not feed.alive:
        raise ServeError(f"label feed stopped: {feed.error or 'thread not running'}")
    if not registry.alive:
        raise ServeError(f"label set preparation stopped: {registry.error}")


class IngestReplica:
    """Consumer loop + label feed + labelled event sink, wired to the embedder handle."""

    def __init__(self, config: Mapping[str, Any], embedder_app: str):
        prefer_huge_page_tensors()  # first thing in the replica's process: streambind.tuning
        # Serve runs constructors on the replica's event loop, where blocking on a handle
        # response is refused; the set-up calls the embedder, so it runs on its own thread.
        failure: list[BaseException] = []

        def set_up() -> None:
            try:
                self._set_up(config, embedder_app)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failure.append(exc)

        thread = threading.Thread(target=set_up, name="ingest-setup")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    def _set_up(self, config: Mapping[str, Any], embedder_app: str) -> None:
        from streambind.stream.runner import StreamRunner

        # Secrets are not in the deployment arguments: this process's environment has them.
        self.config = AppConfig.from_dict(config).with_secrets()
        self._client = ServeEmbedderClient(embedder_handle(embedder_app))
        info = self._client.info()
        self.model = info["model"]
        stream_config = self.config.stream_config(model=self.model)
        bound = bound_towers(info)
        if bound:  # a bound model: its sensors' topics are consumed too
            stream_config = dataclasses.replace(stream_config, bound=bound)
            logger.info("bound sensors of model %s: %s", self.model, ", ".join(
                f"{n} ({c.kind}, {stream_config.topic(n)})" for n, c in bound.items()))
        client_kwargs = {
            "bootstrap_servers": stream_config.bootstrap,
            **stream_config.security_kwargs(),
        }
        ensure_topics(client_kwargs, self.config.labels.topic)
        self.registry = LabelRegistry(self._client.embed_texts, bound=tuple(bound))
        if self.config.labels.file:  # prepared here: the replica starts with it in force
            self.registry.update(LabelSet.from_file(self.config.labels.file))
        self._feed = LabelFeed(self.registry, self.config.labels.topic, client_kwargs).start()
        sink = LabelledEventSink(stream_config, self.registry, fusion=self.config.fusion)
        self._runner = StreamRunner(stream_config, self._client, sink, model=self.model).start()
        self.metrics_port = start_replica_metrics(self.config.metrics)
        logger.info("ingest replica consuming as group %s", stream_config.group_id)

    def check_health(self) -> None:
        """Ray Serve health probe: unhealthy once the consumer loop or the label feed died."""
        check_parts(self._runner, self._feed, self.registry)

    def status(self) -> dict[str, Any]:
        """Model, metrics port, label sets in force and pending, label records by outcome and
        the consumer loop's counters."""
        return {
            "model": self.model,
            "metrics_port": self.metrics_port,
            "label_sets": {s.name: s.version for s in self.registry.label_sets()},
            "label_sets_pending": self.registry.pending(),
            "label_records": dict(self._feed.counts),
            "stats": dataclasses.asdict(self._runner.stats),
            "embed_retries": self._client.retries,
        }

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: drain what is queued, commit what it covers.
        runner = getattr(self, "_runner", None)
        if runner is None:
            return
        self._feed.stop()
        # No wait: a preparation retrying the text tower ends with the client, below (the
        # client must outlive the runner's drain, which still embeds windows).
        self.registry.stop(timeout_s=0.0)
        try:
            runner.stop()
        except Exception:  # noqa: BLE001 - shutting down; already logged by the runner
            logger.warning("consumer loop ended with an error during shutdown")
        finally:
            self._client.stop()
