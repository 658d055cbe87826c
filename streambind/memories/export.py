"""``search --export PATH``: the results of a search as files.

- ``PATH.jsonl``: one ``search --json`` object per moment;
- ``PATH.parquet``: the same fields as columns (``source`` flattened), plus the stored
  preview JPEG (``thumbnail``, binary; null for modalities without frames);
- any other ``PATH``: a directory with ``results.jsonl``, ``results.parquet`` and each
  moment's preview as ``<rank>-<window_id>.jpg``.

The raw source records (frames, audio) are not fetched from Kafka here: each row carries
its ``source`` (topic, partition, first and last offset) to read them while the topic
still holds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from streambind.errors import StreambindError
from streambind.memories.moments import Moment

_SCHEMA = pa.schema([
    ("rank", pa.int32()), ("window_id", pa.string()), ("device_id", pa.string()),
    ("modality", pa.string()), ("window_start_ns", pa.int64()), ("window_end_ns", pa.int64()),
    ("score", pa.float64()), ("moment_start_ns", pa.int64()), ("moment_end_ns", pa.int64()),
    ("windows", pa.int32()), ("modalities", pa.list_(pa.string())),
    ("labels", pa.list_(pa.string())), ("model", pa.string()), ("source_topic", pa.string()),
    ("source_partition", pa.int32()), ("first_offset", pa.int64()), ("last_offset", pa.int64()),
    ("thumbnail", pa.binary()),
])


class ExportError(StreambindError):
    """Search results cannot be written where asked."""


def moments_table(moments: Sequence[Moment]) -> pa.Table:
    """The moments as an Arrow table (:data:`_SCHEMA`), best first."""
    rows = []
    for rank, m in enumerate(moments, start=1):
        obj = m.to_json()
        source = obj.pop("source")
        rows.append({**obj, "rank": rank, "source_topic": source["topic"],
                     "source_partition": source["partition"],
                     "first_offset": source["first_offset"],
                     "last_offset": source["last_offset"], "thumbnail": m.best.thumbnail})
    return pa.Table.from_pylist(rows, schema=_SCHEMA)


def export_moments(moments: Sequence[Moment], path: str | Path) -> list[Path]:
    """Write the moments to ``path`` (see the module docstring); returns the files written."""
    target = Path(path)
    try:
        if target.suffix == ".jsonl":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(json.dumps(m.to_json(), separators=(",", ":")) + "\n"
                                      for m in moments))
            return [target]
        if target.suffix == ".parquet":
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(moments_table(moments), target)
            return [target]
        target.mkdir(parents=True, exist_ok=True)
        written = export_moments(moments, target / "results.jsonl")
        written += export_moments(moments, target / "results.parquet")
        for rank, m in enumerate(moments, start=1):
            if m.best.thumbnail:
                image = target / f"{rank:03d}-{m.best.window_id}.jpg"
                image.write_bytes(m.best.thumbnail)
                written.append(image)
        return written
    except OSError as exc:
        raise ExportError(f"cannot export search results to {target}: {exc}") from exc
