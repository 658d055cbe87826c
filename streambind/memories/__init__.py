"""Memories: every embedded window stored and searchable by text, sound, image or example.

``streambind remember`` consumes ``streambind.embeddings`` into a :class:`~.store.Store`
(LanceDB embedded by default, Qdrant for a cluster), keyed by ``window_id``; ``streambind
search`` embeds queries with the stream's model and featurizers and returns moments.
Submodules are imported lazily so the streaming core does not pay for the store clients.
"""
