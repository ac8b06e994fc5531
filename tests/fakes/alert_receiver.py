"""A local webhook receiver for alerts: records each JSON POST, can fail the next few.

Stands in for whatever an operator points `ALERT_WEBHOOK_URL` at (Slack, PagerDuty,
an incident bot); binds 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class AlertReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # accepted bodies, in order
        self.attempts = 0  # every POST, refused ones included
        self.headers: list[dict[str, str]] = []
        self._fail_next = 0
        self._fail_status = 503
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._fail_next = n
            self._fail_status = status

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/alerts"

    def __enter__(self) -> AlertReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver._fail_next > 0
                    if failing:
                        receiver._fail_next -= 1
                    else:
                        receiver.received.append(json.loads(body))
                        receiver.headers.append(dict(self.headers.items()))
                self.send_response(receiver._fail_status if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
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
