"""Configuration of the streaming core: one frozen :class:`StreamConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streambind.errors import ConfigError
from streambind.model.kinds import BoundTowerConfig, check_modality_name
from streambind.stream.chunks import MODALITIES
from streambind.stream.windows import WindowSpec
from streambind.units import NS_PER_S

DELIVERY_MODES = ("at_least_once", "exactly_once")
SECURITY_FIELDS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class StreamConfig:
    """Everything the consumer loop needs. Durations carry their unit in the name.

    ``topics`` maps a modality to its topic (default ``sensors.<modality>``); only the
    modalities listed in ``modalities`` are consumed. ``state_topic`` keeps restart state
    for brokers that drop commit metadata (None: rely on commit metadata alone).
    ``hop_ms`` overrides the hop per modality (default: half the window);
    ``window_overrides`` passes any other
    :class:`~streambind.stream.windows.WindowSpec` field per modality. Security settings are
    passed to kafka-python unchanged and never logged (``repr`` hides the password).

    ``delivery`` is ``at_least_once`` (default) or ``exactly_once``: outputs, dead letters,
    restart state and offsets are then committed in one Kafka transaction per commit
    interval. ``transactional_id`` should be stable per instance (a pod name), so that a
    restarted instance aborts its predecessor's open transaction at once; unset, each run
    takes a fresh one and an interrupted transaction blocks ``read_committed`` readers of
    the outputs until ``transaction_timeout_s`` passes.

    Bounded memory: ``device_ttl_s`` forgets a device (restart state included) that has had
    no open window and no record for that long; ``max_window_bytes`` bounds the payload one
    open window retains (chunks beyond it are counted, not kept); ``max_buffered_bytes`` is
    the per-replica bound on payload held in open and queued windows (backpressure).

    ``bound`` maps the name of each sensor bound to the model (``streambind bind``) to its
    tower config: its topic ``sensors.<name>`` (or ``topics[name]``) is consumed too, its
    windows follow the tower's input spec (``hop_ms`` and ``window_overrides`` apply by
    name). ``streambind run --model DIR`` fills it from the model's manifest.
    """

    bootstrap: str = "127.0.0.1:9092"
    group_id: str = "streambind"
    modalities: tuple[str, ...] = MODALITIES
    bound: Mapping[str, BoundTowerConfig] = field(default_factory=dict)
    topics: Mapping[str, str] = field(default_factory=dict)
    events_topic: str = "streambind.events"
    embeddings_topic: str = "streambind.embeddings"
    dlq_topic: str = "streambind.dlq"
    state_topic: str | None = "streambind.state"
    publish_embeddings: bool = True
    model: str = "imagebind_huge"
    hop_ms: Mapping[str, int] = field(default_factory=dict)
    window_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allowed_lateness_s: float = 1.0
    idle_timeout_s: float = 5.0
    min_coverage: float | None = None
    max_future_s: float = 60.0
    frame_interval_ms: int = 250
    max_buffered_windows: int = 64
    max_buffered_bytes: int = 512 * 1024 * 1024
    max_window_bytes: int = 64 * 1024 * 1024
    device_ttl_s: float = 600.0
    max_batch_windows: int = 16
    max_poll_records: int = 200
    poll_timeout_ms: int = 200
    commit_interval_s: float = 1.0
    delivery: str = "at_least_once"
    transactional_id: str | None = None
    transaction_timeout_s: float = 60.0
    lag_interval_s: float = 2.0
    session_timeout_ms: int = 10_000
    max_commit_metadata_bytes: int = 4000
    auto_offset_reset: str = "earliest"
    client_id: str = "streambind"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}")
        for name in ("bound", "topics", "hop_ms", "window_overrides"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        self._check_bound()
        if self.max_buffered_windows < 1 or self.max_batch_windows < 1:
            raise ConfigError("max_buffered_windows and max_batch_windows must be >= 1")
        if self.allowed_lateness_s < 0 or self.idle_timeout_s <= 0 or self.max_future_s <= 0:
            raise ConfigError("need allowed_lateness_s >= 0, idle_timeout_s > 0, max_future_s > 0")
        if self.delivery not in DELIVERY_MODES:
            raise ConfigError(f"delivery must be one of {DELIVERY_MODES}, not {self.delivery!r}")
        if self.max_buffered_bytes < 1 or self.max_window_bytes < 1 or self.device_ttl_s <= 0:
            raise ConfigError("need max_buffered_bytes >= 1, max_window_bytes >= 1 and "
                              "device_ttl_s > 0")
        if self.transaction_timeout_s <= 0:
            raise ConfigError("transaction_timeout_s must be > 0")
        for modality in (*self.modalities, *self.bound):
            self.window_spec(modality)  # validates hop and overrides early

    def _check_bound(self) -> None:
        from streambind.stream import custom

        for name, cfg in self.bound.items():
            check_modality_name(name)
            if not isinstance(cfg, BoundTowerConfig) or cfg.modality != name:
                raise ConfigError(f"bound[{name!r}] must be the tower config of {name!r}")
            custom.register(cfg)  # the decoders and featurizers look it up by name
        if self.bound:
            topics = [self.topic(m) for m in (*self.modalities, *self.bound)]
            if len(set(topics)) != len(topics):
                raise ConfigError(f"a bound sensor shares a topic with another stream: "
                                  f"{sorted(topics)}")

    @property
    def streams(self) -> tuple[str, ...]:
        """Every consumed stream: the configured modalities, then the bound sensors."""
        return (*self.modalities, *self.bound)

    @property
    def exactly_once(self) -> bool:
        """Whether outputs and offsets are committed in Kafka transactions."""
        return self.delivery == "exactly_once"

    def topic(self, modality: str) -> str:
        """The Kafka topic of ``modality``."""
        return self.topics.get(modality, f"sensors.{modality}")

    def modality_of(self) -> dict[str, str]:
        """Topic -> modality for the consumed modalities."""
        return {self.topic(m): m for m in self.streams}

    def window_spec(self, modality: str) -> WindowSpec:
        """The :class:`WindowSpec` of ``modality`` with this config's settings applied."""
        overrides: dict[str, Any] = {
            "allowed_lateness_ns": round(self.allowed_lateness_s * NS_PER_S),
            "idle_timeout_s": self.idle_timeout_s,
            "device_ttl_s": self.device_ttl_s,
            "max_window_bytes": self.max_window_bytes,
        }
        if self.min_coverage is not None:
            overrides["min_coverage"] = self.min_coverage
        if modality in self.hop_ms:
            overrides["hop_ns"] = int(self.hop_ms[modality]) * 1_000_000
        overrides.update(self.window_overrides.get(modality, {}))
        if modality in self.bound:
            from streambind.stream import custom

            return custom.window_spec_for(modality, **overrides)
        try:
            return WindowSpec.default(modality, **overrides)
        except TypeError as exc:
            raise ConfigError(f"bad window override for {modality}: {exc}") from exc

    def security_kwargs(self) -> dict[str, Any]:
        """The security settings as kafka-python keyword arguments (unset ones left out)."""
        return {k: getattr(self, k) for k in SECURITY_FIELDS if getattr(self, k) is not None}

    def consumer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaConsumer``."""
        return {
            "bootstrap_servers": self.bootstrap,
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": self.auto_offset_reset,
            "max_poll_records": self.max_poll_records,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": max(100, self.session_timeout_ms // 4),
            # Restart state written in aborted transactions must stay unread.
            "isolation_level": "read_committed" if self.exactly_once else "read_uncommitted",
            **self.security_kwargs(),
        }

    def producer_kwargs(self, transactional_id: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``KafkaProducer`` (acks=all, so acknowledged means durable);
        with ``transactional_id``, a transactional producer."""
        kwargs = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "acks": "all",
            "linger_ms": 5,
            "max_request_size": 16 * 1024 * 1024,
            **self.security_kwargs(),
        }
        if transactional_id is not None:
            kwargs["transactional_id"] = transactional_id
            kwargs["transaction_timeout_ms"] = round(self.transaction_timeout_s * 1000)
        return kwargs
