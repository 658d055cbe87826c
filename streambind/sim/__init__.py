"""Synthetic sensor streams: record builders, scripted devices, the load generator."""
