"""The pipeline's configuration: one YAML file, overridable from the environment.

Sections and their defaults are the frozen dataclasses below. Any key can be overridden
with an environment variable ``STREAMBIND_<SECTION>__<KEY>``, for example
``STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD`` or ``STREAMBIND_EMBEDDER__NUM_GPUS=1``; values
are parsed as YAML scalars.

Credentials belong in the environment (a Kubernetes Secret as
``STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD``) or in a mounted file whose *path* the config
names (``kafka.sasl_plain_password_file``), never in the file itself; they are masked in
every repr. They never travel as Ray Serve deployment arguments (Ray keeps those in its
control store and shows them on its dashboard): the app builders bind ``public_dict()``,
and each replica reads its secrets from its own environment with ``with_secrets``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streambind.errors import ConfigError
from streambind.stream.config import SECURITY_FIELDS

if TYPE_CHECKING:
    from streambind.stream.config import StreamConfig

ENV_PREFIX = "STREAMBIND_"
SECRET_KEYS = frozenset({"sasl_plain_password"})
SECRET_FILE_SUFFIX = "_file"
SECRET_FILE_KEYS = frozenset(key + SECRET_FILE_SUFFIX for key in SECRET_KEYS)
"""``kafka.<secret>_file``: the path of a mounted file holding the secret (a path is no
secret, so it may travel in deployment arguments)."""
MAX_SECRET_FILE_BYTES = 64 * 1024

KAFKA_KEYS = frozenset(
    {"bootstrap_servers", "group_id", "client_id", *SECURITY_FIELDS, *SECRET_FILE_KEYS}
)


@dataclass(frozen=True)
class ModelSettings:
    """Which model the embedder loads, where, and in which precision."""

    source: str = "tiny"  # "huge", "tiny", or a path to an official-layout .pth file
    cache_dir: str | None = None
    device: str = "auto"  # "auto" picks cuda when available
    dtype: str = "auto"  # "auto": bf16 on GPU, fp32 on CPU
    modalities: tuple[str, ...] | None = None  # None: every tower


@dataclass(frozen=True)
class BatchSettings:
    """Dynamic batching of one modality in the embedder (tunable at runtime)."""

    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.01


@dataclass(frozen=True)
class EmbedderSettings:
    """The Ray Serve embedder deployment."""

    num_replicas: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_ongoing_requests: int = 256
    autoscaling: Mapping[str, Any] | None = None
    batching: Mapping[str, BatchSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestSettings:
    """The Ray Serve ingest deployment: each replica is one consumer-group member."""

    num_replicas: int = 1
    num_cpus: float = 1.0


@dataclass(frozen=True)
class LabelSettings:
    """Where label sets come from: a file at start, the compacted topic afterwards."""

    file: str | None = None
    topic: str = "streambind.labels"


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus endpoint: each process binds the first free port from ``port``."""

    port: int = 9100
    host: str = "0.0.0.0"
    port_attempts: int = 16


@dataclass(frozen=True)
class AppConfig:
    """The whole configuration. ``kafka`` and ``stream`` go to the streaming core as-is."""

    kafka: Mapping[str, Any] = field(default_factory=dict)
    stream: Mapping[str, Any] = field(default_factory=dict)
    model: ModelSettings = ModelSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    ingest: IngestSettings = IngestSettings()
    labels: LabelSettings = LabelSettings()
    metrics: MetricsSettings = MetricsSettings()
    fusion: bool = True

    def __repr__(self) -> str:
        kafka = {k: ("***" if k in SECRET_KEYS else v) for k, v in self.kafka.items()}
        fields = ", ".join(
            f"{f.name}={kafka if f.name == 'kafka' else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"AppConfig({fields})"

    def stream_config(self, model: str) -> StreamConfig:
        """The streaming core's config: the ``kafka`` and ``stream`` sections combined."""
        from streambind.stream.config import StreamConfig

        kafka = {k: v for k, v in self.kafka.items() if k not in SECRET_FILE_KEYS}
        bootstrap = kafka.pop("bootstrap_servers", None)
        if not bootstrap:
            raise ConfigError("kafka.bootstrap_servers is not set")
        stream = dict(self.stream)
        if "modalities" in stream:
            stream["modalities"] = tuple(stream["modalities"])
        try:
            return StreamConfig(bootstrap=bootstrap, model=model, **kafka, **stream)
        except TypeError as exc:
            raise ConfigError(f"stream/kafka settings: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, secrets included; inverse of ``from_dict``. Not for deployment
        arguments: use ``public_dict``."""
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """``to_dict`` without the secrets: what may be passed to Ray Serve replicas, which
        read the secrets from their own environment (``with_secrets``)."""
        doc = self.to_dict()
        doc["kafka"] = {k: v for k, v in doc["kafka"].items() if k not in SECRET_KEYS}
        return doc

    def with_secrets(self, environ: Mapping[str, str] | None = None) -> AppConfig:
        """This config with its secrets read from ``environ`` (default: this process's
        environment) or from the files ``kafka.<secret>_file`` names; the environment wins,
        then a value already here, then the file. ``ConfigError`` if a named file cannot be
        read, or a SASL protocol is configured and no password was found."""
        environ = os.environ if environ is None else environ
        from_env = env_overrides(environ).get("kafka") or {}
        kafka = dict(self.kafka)
        for key in SECRET_KEYS:
            path = from_env.get(key + SECRET_FILE_SUFFIX) or kafka.get(key + SECRET_FILE_SUFFIX)
            if from_env.get(key) is not None:
                kafka[key] = str(from_env[key])
            elif kafka.get(key) is None and path:
                kafka[key] = read_secret_file(str(path), key)
        protocol = str(kafka.get("security_protocol") or "")
        if protocol.startswith("SASL") and not kafka.get("sasl_plain_password"):
            mechanism = str(kafka.get("sasl_mechanism") or "PLAIN")  # kafka-python default
            if mechanism.startswith(("PLAIN", "SCRAM")):
                raise ConfigError(
                    f"kafka.security_protocol is {protocol} but no password: set "
                    f"{ENV_PREFIX}KAFKA__SASL_PLAIN_PASSWORD or kafka.sasl_plain_password_file"
                )
        return dataclasses.replace(self, kafka=kafka)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AppConfig:
        """Build and validate from nested plain data; raises ``ConfigError``."""
        unknown = set(doc) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config sections: {sorted(unknown)}")
        kafka = dict(doc.get("kafka") or {})
        bad_kafka = set(kafka) - KAFKA_KEYS
        if bad_kafka:
            raise ConfigError(f"unknown kafka settings: {sorted(bad_kafka)}")
        embedder = dict(doc.get("embedder") or {})
        batching = {
            modality: _section(BatchSettings, settings, f"embedder.batching.{modality}")
            for modality, settings in (embedder.pop("batching", None) or {}).items()
        }
        model = dict(doc.get("model") or {})
        if model.get("modalities") is not None:
            model["modalities"] = tuple(model["modalities"])
        return cls(
            kafka=kafka,
            stream=dict(doc.get("stream") or {}),
            model=_section(ModelSettings, model, "model"),
            embedder=dataclasses.replace(
                _section(EmbedderSettings, embedder, "embedder"), batching=batching
            ),
            ingest=_section(IngestSettings, doc.get("ingest"), "ingest"),
            labels=_section(LabelSettings, doc.get("labels"), "labels"),
            metrics=_section(MetricsSettings, doc.get("metrics"), "metrics"),
            fusion=bool(doc.get("fusion", True)),
        )


def read_secret_file(path: str, key: str) -> str:
    """A secret from a mounted file (one value; surrounding whitespace removed)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read kafka.{key}{SECRET_FILE_SUFFIX} {path}: {exc}") from exc
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"kafka.{key}{SECRET_FILE_SUFFIX} {path} is too large for a secret")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"kafka.{key}{SECRET_FILE_SUFFIX} {path} is not UTF-8") from exc


def _section(cls: type, values: Mapping[str, Any] | None, name: str) -> Any:
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown settings in {name}: {sorted(unknown)}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Nested overrides from ``STREAMBIND_<SECTION>__<KEY>[__<SUBKEY>]`` variables."""
    import yaml

    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if path[-1] in SECRET_KEYS or isinstance(value, dict | list) and path[0] == "kafka":
            value = raw  # secrets are opaque strings, whatever they look like
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AppConfig:
    """Read the YAML file (if any), apply environment then explicit overrides, validate."""
    import yaml

    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
    doc = deep_merge(doc, env_overrides(os.environ if environ is None else environ))
    doc = deep_merge(doc, overrides or {})
    return AppConfig.from_dict(doc)
