"""Typed exceptions. Every error streambind raises on purpose derives from StreambindError."""


class StreambindError(Exception):
    """Base class of every error raised by streambind on purpose."""


class ConfigError(StreambindError, ValueError):
    """A configuration file, flag or environment variable is invalid."""


class CheckpointError(StreambindError):
    """A model checkpoint is missing, corrupt, or does not match the architecture."""


class FeatureError(StreambindError, ValueError):
    """Raw sensor data cannot be turned into a model input (shape, values, encoding).

    ``reason`` is the dead-letter code the streaming core uses when it rejects the record:
    ``bad_shape``, ``non_finite``, ``decode_error``, ``too_short`` or ``bad_encoding``.
    """

    def __init__(self, message: str, reason: str = "bad_shape"):
        super().__init__(message)
        self.reason = reason


class RecordError(StreambindError):
    """A Kafka record is rejected; `reason` is the dead-letter code of the wire contract."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerError(StreambindError):
    """The embedded broker could not be started or stopped."""


class ServeError(StreambindError):
    """The Ray Serve embedder or ingest deployment failed."""
