"""A tiny threaded JSON-over-HTTP server base for the fakes of internet services.

Each fake (Tavily, Perplexity, the alert receiver) subclasses `JsonFake` and answers
`handle(method, path, body)`; this module binds 127.0.0.1 port 0, records requests and
their headers, checks the bearer key (when it has one), and can fail or delay the next
requests, all driven from the test's thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JSON = dict[str, Any]


class JsonFake:
    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key  # None: any caller is accepted
        self.requests: list[tuple[str, str, JSON]] = []  # (method, path, body)
        self.headers: list[dict[str, str]] = []  # of each request, in the same order
        self.delay = 0.0
        self._fail_remaining = 0
        self._fail_status = 503
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._fail_remaining, self._fail_status = n, status

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _ in self.requests]

    def handle(self, method: str, path: str, body: JSON) -> tuple[int, JSON]:
        raise NotImplementedError

    def _serve(
        self, method: str, path: str, headers: Mapping[str, str], body: JSON
    ) -> tuple[int, JSON]:
        with self._lock:
            self.requests.append((method, path, body))
            self.headers.append(dict(headers))
            failing = self._fail_remaining > 0
            if failing:
                self._fail_remaining -= 1
        if self.delay:
            time.sleep(self.delay)
        if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"detail": {"error": "invalid api key"}}
        if failing:
            return self._fail_status, {"detail": {"error": "temporarily unavailable"}}
        return self.handle(method, path, body)


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        fake: JsonFake = self.server.fake  # type: ignore[attr-defined]
        status, payload = fake._serve("POST", self.path, dict(self.headers.items()), body)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
