"""A local HTTP server that speaks enough of the LangSmith API for the real `langsmith`
client to trace into it, recording every request so tests can read what would have
left the machine.

It answers `GET /info` (no compression, so bodies arrive readable), accepts runs on
`/runs`, `/runs/batch` and `/runs/multipart`, and decompresses gzip/zstd bodies should
a client send them anyway. Nothing is forwarded anywhere.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class FakeLangSmith:
    def __init__(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeLangSmith:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def run_uploads(self) -> list[RecordedRequest]:
        """Requests that carried runs (creations, updates, batches)."""
        return [r for r in self.requests if r.path.startswith("/runs") and r.method != "GET"]

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every uploaded run by id, its creation and updates merged in order: what the
        LangSmith UI would show (`name`, `tags`, `extra.metadata`, `inputs`, `outputs`)."""
        merged: dict[str, dict[str, Any]] = {}
        for request in self.run_uploads:
            for name, value in _run_parts(request):
                _action, run_id, *field = name.split(".", 2)
                run = merged.setdefault(run_id, {})
                if field:
                    run[field[0]] = value
                elif isinstance(value, dict):
                    run.update(value)
        return merged

    def uploaded_text(self) -> str:
        """Everything the client tried to upload, as one searchable string."""
        return "\n".join(request.text for request in self.run_uploads)


def _run_parts(request: RecordedRequest) -> list[tuple[str, Any]]:
    """(part name, JSON value) of a multipart upload, or of a JSON batch/run body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        envelope = f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope)
        parts = []
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            name = part.get_param("name", header="content-disposition")
            if isinstance(payload, bytes) and isinstance(name, str):
                parts.append((name, json.loads(payload)))
        return parts
    body = json.loads(request.body or b"{}")
    if request.path.startswith("/runs/batch"):
        posts = [(f"post.{run['id']}", run) for run in body.get("post", [])]
        return posts + [(f"patch.{run['id']}", run) for run in body.get("patch", [])]
    return [(f"run.{body.get('id') or request.path.rsplit('/', 1)[-1]}", body)]


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def _handler_for(fake: FakeLangSmith) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = _decode(raw, self.headers.get("Content-Encoding", ""))
            headers = {name.lower(): value for name, value in self.headers.items()}
            fake.record(RecordedRequest(self.command, self.path, headers, body))

        def do_GET(self) -> None:
            self._record()
            if self.path.startswith("/info"):
                self._answer(200, {"version": "0.0.0-fake", "instance_flags": {}})
            else:
                self._answer(200, {})

        def do_POST(self) -> None:
            self._record()
            self._answer(202 if self.path.startswith("/runs/multipart") else 200, {})

        def do_PATCH(self) -> None:
            self._record()
            self._answer(200, {})

    return Handler
