"""Streaming core: Kafka records in, event-time windows out, outputs published."""
