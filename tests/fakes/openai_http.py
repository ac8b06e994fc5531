"""The HTTP side of the fake OpenAI server: routing a request, the keep-alive handler
that writes JSON and SSE bodies, and noticing a client that hung up while it waited.

Apart from tests/fakes/openai_server.py so that the scripting API tests drive (script,
hold, fail, outage) reads without the socket handling around it; the handler reaches
the fake only through `OpenAIState`, the handful of calls that record a request and
decide its answer. The bodies themselves are built in tests/fakes/openai_stream.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from tests.fakes.openai_media import FakeTranscriptions
from tests.fakes.openai_stream import (
    JSON,
    Error,
    Reply,
    completion_body,
    embeddings_body,
    error_body,
    stream_events,
)


class OpenAIState(Protocol):
    """What the handler reads and records through: the fake's state (FakeOpenAIServer)."""

    retry_after_ms: float | None
    stream_interval: float
    stream_cut_after: int | None
    transcriptions: FakeTranscriptions

    def authorized(self, header: str | None) -> bool: ...

    def record_chat(self, body: JSON) -> int: ...

    def record_embedding(self, body: JSON) -> None: ...

    def wait_turn(self, client_gone: Callable[[], bool]) -> bool: ...

    def next_reply(self, body: JSON) -> Reply | Error: ...

    def record_exchange(self, body: JSON, reply: Reply, streamed: bool) -> JSON | None: ...

    def record_completion_usage(self, usage: JSON) -> None: ...

    def record_stream_done(self) -> None: ...


class OpenAIHTTPServer(ThreadingHTTPServer):
    """Thread per request (held requests never block others), deep accept backlog."""

    daemon_threads = True
    request_queue_size = 512
    fake: OpenAIState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (killed workers, timeouts) is expected; stay quiet."""


class OpenAIHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler: every response has a length or is chunked."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs cap a
    # keep-alive connection at ~25 requests/s.
    disable_nagle_algorithm = True
    server: OpenAIHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request stderr logging would swamp benchmark output."""

    def do_GET(self) -> None:
        self._read_body()
        self._send_json(404, error_body(Error(404, f"Unknown path {self.path}")))

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
            fake = self.server.fake
            path = self.path.split("?", 1)[0].removeprefix("/v1")
            if not fake.authorized(self.headers.get("Authorization")):
                err = Error(401, "Incorrect API key provided.", code="invalid_api_key")
                self._send_json(401, error_body(err))
                return
            if path == "/audio/transcriptions":  # multipart, not JSON
                content_type = self.headers.get("Content-Type", "")
                self._send_json(*fake.transcriptions.answer(content_type, raw))
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send_json(400, error_body(Error(400, "Request body is not JSON.")))
                return
            if path == "/chat/completions":
                self._chat(fake, body)
            elif path == "/embeddings":
                fake.record_embedding(body)
                self._send_json(200, embeddings_body(body))
            else:
                self._send_json(404, error_body(Error(404, f"Unknown path {self.path}")))
        except OSError:
            self.close_connection = True

    def _chat(self, fake: OpenAIState, body: JSON) -> None:
        seq = fake.record_chat(body)
        if not fake.wait_turn(self._client_gone):
            self.close_connection = True
            return
        reply = fake.next_reply(body)
        if isinstance(reply, Error) and reply.status == 0:
            self.close_connection = True  # hung up without an answer
            return
        if isinstance(reply, Error):
            headers = {}
            if fake.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fake.retry_after_ms)
            self._send_json(reply.status, error_body(reply), headers)
        elif body.get("stream"):
            usage = fake.record_exchange(body, reply, streamed=True)
            self._send_stream(stream_events(body, reply, seq, usage))
        else:
            completion = completion_body(body, reply, seq, fake.record_exchange(body, reply, False))
            fake.record_completion_usage(completion["usage"])
            self._send_json(200, completion)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: JSON, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: list[bytes]) -> None:
        """SSE over chunked transfer encoding, one HTTP chunk (one write) per event."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        fake = self.server.fake
        for index, event in enumerate(events):
            if fake.stream_cut_after is not None and index >= fake.stream_cut_after:
                self.close_connection = True  # no last chunk: the client sees a broken body
                return
            if index and fake.stream_interval > 0:
                time.sleep(fake.stream_interval)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")
        fake.record_stream_done()

    def _client_gone(self) -> bool:
        """Peek at the socket: EOF or reset means the client hung up while we waited."""
        sock: socket.socket = self.connection
        previous = sock.gettimeout()
        try:
            sock.settimeout(0)
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(previous)
