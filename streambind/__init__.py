"""streambind: Kafka sensor streams to ImageBind embeddings and zero-shot labelled events."""

__version__ = "0.1.0"

MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
"""Sensor modalities, in the order used everywhere (topics, metrics, configs)."""
