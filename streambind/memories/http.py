"""streambind memories serve: the memories search over HTTP, and its web page.

    streambind memories serve --store ./streambind-memories --port 8765

A standard-library ``ThreadingHTTPServer`` (in a thread: :class:`MemoriesServer`) over
:class:`~streambind.memories.search.Memories`, so queries are embedded by the model the
store's rows were written with. Endpoints (JSON in, JSON out):

- ``GET /api/info``: store, model, row count, upload limit.
- ``GET /api/search?text=...&device=...``: search with query-string fields.
- ``POST /api/search``: the same fields as JSON, urlencoded or ``multipart/form-data``; a
  multipart request may upload ``audio`` (``.wav``), ``image`` or ``file`` (either, told
  apart by its header) parts.
- ``GET /api/windows/WINDOW_ID``: one stored window (no vector), its labels and thumbnail.
- ``GET /``: the web page (``memories/web``).

Fields: ``text``, ``minus``, ``like`` (repeatable; ``::W`` weights as on the command line),
``device``, ``modality`` (repeatable), ``label``, ``since``, ``until`` (ISO-8601 or ns),
``k``, ``min_score``, ``windows`` (do not merge moments), ``gap_s``. Bad requests get a
4xx with ``{"error": {"code", "type", "message"}}``, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from streambind.errors import StreambindError
from streambind.memories.query import QueryError
from streambind.memories.requests import (
    MAX_FORM_BYTES,
    MAX_UPLOAD_BYTES,
    RequestError,
    SearchRequest,
    bad_request,
    fields_from_json,
    parse_multipart,
    parse_search,
)
from streambind.memories.search import Memories
from streambind.memories.store import StoreError

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png",
                  ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class ServerConfig:
    """Where to listen and how much a request may carry."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_upload_bytes: int = MAX_UPLOAD_BYTES


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")


def _thumbnail(data: bytes | None) -> str | None:
    return None if not data else "data:image/jpeg;base64," + base64.b64encode(data).decode()


def result_json(moment: Any) -> dict[str, object]:
    """A moment as the ``search --json`` object plus ISO times and its thumbnail (data URI)."""
    out = moment.to_json()
    out.update(start=_iso(moment.moment_start_ns), end=_iso(moment.moment_end_ns),
               thumbnail=_thumbnail(moment.best.thumbnail))
    return out


class MemoriesService:
    """The request logic, apart from HTTP plumbing; one lock keeps model and store serial."""

    def __init__(self, memories: Memories, config: ServerConfig) -> None:
        self.memories = memories
        self.config = config
        self._lock = threading.Lock()

    def info(self) -> dict[str, object]:
        """The store's URI, model, row count and the upload limit."""
        with self._lock:
            rows = self.memories.store.count(self.memories.model)
        return {"store": self.memories.store.uri, "model": self.memories.model, "rows": rows,
                "max_upload_bytes": self.config.max_upload_bytes}

    def search(self, request: SearchRequest) -> dict[str, object]:
        """Run one search; unknown ``like`` windows are a 404."""
        start_s = time.perf_counter()
        likes = [str(i.value) for i in request.items if i.kind == "like"]
        with self._lock:
            if likes:
                found = self.memories.store.get(self.memories.model, likes)
                missing = sorted(set(likes) - set(found.column("window_id").to_pylist()))
                if missing:
                    raise RequestError(404, "not_found", f"no stored window {missing[0]!r}")
            moments = self.memories.search(
                list(request.items), where=request.where, k=request.k, label=request.label,
                min_score=request.min_score, merge=request.merge, gap_ns=request.gap_ns)
            plan = self.memories.last_plan
        results = [result_json(m) for m in moments]
        return {"results": results, "count": len(results), "model": self.memories.model,
                "plan": None if plan is None else {"exact": plan.exact, "reason": plan.reason},
                "took_ms": round((time.perf_counter() - start_s) * 1000, 1)}

    def window(self, window_id: str) -> dict[str, object]:
        """One stored window's fields (without its vector), labels and thumbnail."""
        with self._lock:
            rows = self.memories.store.get(self.memories.model, [window_id])
            labels = self.memories.store.labels_of(self.memories.model, [window_id])
        if rows.num_rows == 0:
            raise RequestError(404, "not_found", f"no stored window {window_id!r}")
        row = {n: rows.column(n)[0].as_py() for n in rows.column_names if n != "vector"}
        row["thumbnail"] = _thumbnail(row.get("thumbnail"))
        row["labels"] = labels.get(window_id, [])
        row.update(start=_iso(row["window_start_ns"]), end=_iso(row["window_end_ns"]))
        return row


class _Handler(BaseHTTPRequestHandler):
    server_version = "streambind-memories"
    service: MemoriesService  # set on the subclass made per server
    timeout = 30  # a stalled client cannot hold a thread for ever

    def log_message(self, format: str, *args: object) -> None:  # http.server's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(),
                   "application/json")

    def _error(self, status: int, code: str, kind: str, message: str) -> None:
        self._json(status, {"error": {"code": code, "type": kind, "message": message}})

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "length_required", "Content-Length is required")
        try:
            size = int(length)
        except ValueError as exc:
            raise bad_request("Content-Length is not an integer") from exc
        if size < 0 or size > limit:
            self.close_connection = True  # the unread body must not be taken for a request
            raise RequestError(413, "payload_too_large",
                               f"request body of {size} bytes; the limit is {limit}")
        return self.rfile.read(size)

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/api/"):
            if path == "/api/info" and self.command in ("GET", "HEAD"):
                return self._json(200, self.service.info())
            if path == "/api/search" and self.command in ("GET", "POST"):
                return self._json(200, self.service.search(self._search_request(url.query)))
            if path.startswith("/api/windows/") and self.command in ("GET", "HEAD"):
                return self._json(200, self.service.window(unquote(path[len("/api/windows/"):])))
            if path in ("/api/info", "/api/search") or path.startswith("/api/windows/"):
                raise RequestError(405, "method_not_allowed", f"{self.command} {path}")
            raise RequestError(404, "not_found", f"no endpoint {path}")
        if self.command not in ("GET", "HEAD"):
            raise RequestError(405, "method_not_allowed", f"{self.command} {path}")
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        target = WEB_DIR / name
        # Only plain files directly in web/: no subfolders, no "..", no symlinks out.
        if "/" in name or name.startswith(".") or not target.is_file() or target.is_symlink():
            raise RequestError(404, "not_found", f"no page {path}")
        content_type = _CONTENT_TYPES.get(target.suffix, "application/octet-stream")
        self._send(200, target.read_bytes(), content_type)

    def _search_request(self, query: str) -> SearchRequest:
        fields = parse_qs(query, keep_blank_values=False, max_num_fields=256)
        if self.command == "GET":
            return parse_search(fields)
        content_type = self.headers.get("Content-Type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/form-data":
            form, files = parse_multipart(content_type,
                                          self._body(self.service.config.max_upload_bytes))
            return parse_search({**fields, **form}, files)
        body = self._body(MAX_FORM_BYTES)
        if media in ("application/json", ""):
            return parse_search({**fields, **fields_from_json(body)})
        if media == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=256)
            return parse_search({**fields, **form})
        raise RequestError(415, "unsupported_media_type",
                           f"Content-Type {media!r}; use JSON, urlencoded or multipart/form-data")

    def _handle(self) -> None:
        try:
            self._route()
        except RequestError as exc:
            self._error(exc.status, exc.code, type(exc).__name__, str(exc))
        except (QueryError, ValueError) as exc:
            self._error(400, "bad_request", type(exc).__name__, str(exc))
        except StoreError as exc:
            logger.warning("store error: %s", exc)
            self._error(503, "store_unavailable", type(exc).__name__, str(exc))
        except StreambindError as exc:
            self._error(400, "bad_request", type(exc).__name__, str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # the traceback goes to the log, never to the client
            logger.exception("search request failed: %s %s", self.command, self.path)
            self._error(500, "internal", "InternalError", "internal error; see the server log")

    do_GET = do_POST = do_HEAD = _handle

    def do_PUT(self) -> None:  # http.server's naming
        self._error(405, "method_not_allowed", "RequestError", f"{self.command} {self.path}")

    do_DELETE = do_PATCH = do_PUT


class MemoriesServer:
    """The HTTP API and page on a background thread: ``start()``, ``url``, ``stop()``."""

    def __init__(self, memories: Memories, config: ServerConfig = ServerConfig()) -> None:
        handler = type("MemoriesHandler", (_Handler,),
                       {"service": MemoriesService(memories, config)})
        self.httpd = ThreadingHTTPServer((config.host, config.port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (``port=0`` picks a free one)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MemoriesServer:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="memories-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``streambind memories serve`` flags."""
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--model", default=None,
                        help="rows' model name (default: the store's only model)")
    parser.add_argument("--model-source", default=None,
                        help="model to embed queries with (default: derived from --model)")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20)
    parser.add_argument("--lazy-model", action="store_true",
                        help="load the model on the first query instead of at start")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; the first stdout line is ``{"url": ...}``."""
    memories = Memories(args.store, args.model, model_source=args.model_source)
    if not args.lazy_model:
        _ = memories.runner  # load now: the first query should not wait for the model
    config = ServerConfig(args.host, args.port, int(args.max_upload_mb * 2**20))
    server = MemoriesServer(memories, config)
    logger.info("memories of %s (%s) at %s", args.store, memories.model, server.url)
    sys.stdout.write(json.dumps({"url": server.url, "model": memories.model}) + "\n")
    sys.stdout.flush()
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
