"""Load the wire schemas from ``schemas/`` (the one source of truth) as Arrow schemas.

The repository's ``schemas/`` directory is used when present (source tree, editable
install); an installed package falls back to its byte-identical copy in
``streambind/stream/schema_files``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from streambind.errors import ConfigError
from streambind.stream.chunks import MODALITIES

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "binary": pa.binary(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
}
_FIXED_LIST = re.compile(r"^fixed_size_list<(\w+)>\[(\w+)\]$")


def schema_dir() -> Path:
    """The directory the schema files are read from."""
    repo = Path(__file__).resolve().parents[2] / "schemas"
    if (repo / "event.schema.json").is_file():
        return repo
    return Path(str(resources.files("streambind.stream").joinpath("schema_files")))


@functools.cache
def load_json(name: str) -> dict[str, Any]:
    """Parse one schema file by file name, e.g. ``"audio.v1.json"``."""
    path = schema_dir() / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read schema file {name}: {exc}") from exc


def _arrow_type(name: str, dim: int | None) -> pa.DataType:
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    match = _FIXED_LIST.match(name)
    if match and match.group(1) in _SIMPLE_TYPES:
        size = int(match.group(2)) if match.group(2).isdigit() else dim
        if size is None or size <= 0:
            raise ConfigError(f"type {name} needs an embedding width")
        return pa.list_(_SIMPLE_TYPES[match.group(1)], size)
    raise ConfigError(f"unknown Arrow type in schema file: {name}")


def _to_arrow(doc: dict[str, Any], dim: int | None = None) -> pa.Schema:
    fields = [
        pa.field(f["name"], _arrow_type(f["type"], dim), nullable=bool(f.get("nullable", True)))
        for f in doc["fields"]
    ]
    return pa.schema(fields, metadata={"schema": doc["name"]})


def sensor_doc(modality: str) -> dict[str, Any]:
    """The JSON description of a sensor modality's schema (fields, limits, window)."""
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return load_json(f"{modality}.v1.json")


@functools.cache
def sensor_schema(modality: str) -> pa.Schema:
    """The Arrow schema of ``sensors.<modality>`` record values."""
    return _to_arrow(sensor_doc(modality))


def schema_header(modality: str) -> str:
    """The value of the ``schema`` header for a modality, e.g. ``streambind.audio.v1``."""
    return str(sensor_doc(modality)["name"])


def limits(modality: str) -> dict[str, Any]:
    """Per-modality acceptance limits (payload size, rows, encodings, rates, dimensions)."""
    return dict(sensor_doc(modality)["limits"])


@functools.cache
def embeddings_schema(dim: int) -> pa.Schema:
    """The Arrow schema of ``streambind.embeddings`` values for embedding width ``dim``."""
    return _to_arrow(load_json("embeddings.v1.json"), dim)


def event_json_schema(modalities: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``streambind.events`` value.

    ``modalities``: the towers of the model that produced the events (a bound model adds
    its sensors' names); the schema's ``modality`` is then exactly one of them or
    ``fused``, instead of any well-formed sensor name."""
    doc = load_json("event.schema.json")
    if modalities is None:
        return doc
    doc = copy.deepcopy(doc)
    doc["properties"]["modality"] = {"enum": sorted({*modalities, "fused"} - {"text"})}
    return doc
