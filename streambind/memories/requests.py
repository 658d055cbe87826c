"""Search requests of ``streambind memories serve``: fields from a query string, JSON or
``multipart/form-data`` body, checked against the server's limits into a
:class:`SearchRequest`; every refusal is a typed :class:`RequestError` with its status."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from streambind.errors import StreambindError
from streambind.memories.query import QueryItem, parse_weighted
from streambind.memories.search import parse_time
from streambind.memories.store import Filter

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_FORM_BYTES = 1024 * 1024  # a JSON or urlencoded body: no files, so small
MAX_ITEMS = 32
MAX_K = 200
MAX_TEXT_CHARS = 1000
_LIST_FIELDS = ("text", "minus", "like", "device", "modality")
_FILE_KINDS = ("audio", "image", "file")


class RequestError(StreambindError):
    """A request the server refuses; ``status`` is its HTTP status, ``code`` a short name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def bad_request(message: str) -> RequestError:
    return RequestError(400, "bad_request", message)


def file_kind(data: bytes) -> str:
    """``audio`` for a RIFF/WAVE file, else ``image`` (the decoder reports what it is not)."""
    return "audio" if data[:4] == b"RIFF" and data[8:12] == b"WAVE" else "image"


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]],
                                                             list[tuple[str, bytes]]]:
    """(text fields, [(file kind, bytes)]) of a ``multipart/form-data`` body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise bad_request("malformed multipart body")
    fields: dict[str, list[str]] = {}
    files: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None or name in _FILE_KINDS:
            if name not in _FILE_KINDS:
                raise bad_request(f"unexpected file field {name!r}; expected one of {_FILE_KINDS}")
            if payload:  # an empty file input is no query item
                files.append((file_kind(payload) if name == "file" else name, payload))
        else:
            fields.setdefault(str(name), []).append(payload.decode("utf-8", "replace"))
    return fields, files


def fields_from_json(body: bytes) -> dict[str, list[str]]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise bad_request(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise bad_request("JSON body must be an object")
    fields: dict[str, list[str]] = {}
    for name, value in data.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, dict | list) for v in values):
            raise bad_request(f"field {name!r} must be a string, number or list of them")
        fields[name] = ["" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                        for v in values]
    return fields


def _one(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = [v for v in fields.get(name, []) if v.strip() != ""]
    if len(values) > 1:
        raise bad_request(f"field {name!r} given {len(values)} times")
    return values[0].strip() if values else None


def _number(fields: Mapping[str, list[str]], name: str, kind: type, default: Any) -> Any:
    raw = _one(fields, name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise bad_request(f"field {name!r} is not a {kind.__name__}: {raw!r}") from exc


@dataclass(frozen=True)
class SearchRequest:
    """A parsed search: query items, filters and options for :meth:`Memories.search`."""

    items: tuple[QueryItem, ...]
    where: Filter
    k: int = 10
    label: str | None = None
    min_score: float | None = None
    merge: bool = True
    gap_ns: int = 0


def parse_search(fields: Mapping[str, list[str]],
                 files: Sequence[tuple[str, bytes]] = ()) -> SearchRequest:
    """A :class:`SearchRequest` from request fields and uploaded files; typed 400 errors."""
    known = {*_LIST_FIELDS, "label", "since", "until", "k", "min_score", "windows", "gap_s"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise bad_request(f"unknown field(s) {unknown}; expected some of {sorted(known)}")
    items: list[QueryItem] = []
    for name, kind, sign in (("text", "text", 1.0), ("like", "like", 1.0),
                             ("minus", "text", -1.0)):
        for raw in fields.get(name, []):
            if not raw.strip():
                continue
            if len(raw) > MAX_TEXT_CHARS:
                raise bad_request(f"{name} longer than {MAX_TEXT_CHARS} characters")
            value, weight = parse_weighted(raw.strip())
            items.append(QueryItem(kind, value, sign * weight))
    items.extend(QueryItem(kind, data) for kind, data in files)
    if not items:
        raise bad_request("give at least one of text, like, or an audio/image file")
    if len(items) > MAX_ITEMS:
        raise bad_request(f"at most {MAX_ITEMS} query items")
    k = _number(fields, "k", int, 10)
    if not 1 <= k <= MAX_K:
        raise bad_request(f"k must be between 1 and {MAX_K}")
    since, until = _one(fields, "since"), _one(fields, "until")
    where = Filter(
        devices=tuple(v.strip() for v in fields.get("device", []) if v.strip()),
        modalities=tuple(v.strip() for v in fields.get("modality", []) if v.strip()),
        since_ns=None if since is None else parse_time(since),
        until_ns=None if until is None else parse_time(until))
    gap_s = _number(fields, "gap_s", float, 0.0)
    if not 0 <= gap_s <= 86_400:
        raise bad_request("gap_s must be between 0 and 86400")
    windows = (_one(fields, "windows") or "false").lower()
    if windows not in ("true", "false", "1", "0", "on", "off"):
        raise bad_request(f"windows must be true or false, got {windows!r}")
    return SearchRequest(tuple(items), where, k, _one(fields, "label"),
                         _number(fields, "min_score", float, None),
                         windows in ("false", "0", "off"), int(gap_s * 1e9))
