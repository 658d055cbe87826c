"""Serving: the Ray Serve embedder and ingest applications, labelled events, `streambind run`."""
