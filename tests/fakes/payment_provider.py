"""A local payment-link service speaking the API `HttpPaymentLinkProvider` calls, so the
real httpx + tenacity code runs end to end (timeouts, retries, idempotency) with no
network. Behaviour is driven from the `FakePaymentProvider` object in the test.

    POST /v1/payment_links            (Bearer key, Idempotency-Key) → 201 link
    GET  /v1/payment_links/{id}       → the link
    POST /v1/payment_links/{id}/cancel → the link, cancelled
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

JSON = dict[str, Any]


class FakePaymentProvider:
    def __init__(self, api_key: str = "pk-test") -> None:
        self.api_key = api_key
        self.links: dict[str, JSON] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.requests: list[tuple[str, str, JSON]] = []  # (method, path, body)
        self.delay = 0.0
        self._fail_remaining = 0
        self._fail_status = 503
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakePaymentProvider:
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
        """Answer the next `n` requests with `status` (before doing anything)."""
        with self._lock:
            self._fail_remaining, self._fail_status = n, status

    def mark_paid(self, link_id: str, *, receipt_url: str | None = None) -> None:
        """Paid, as the customer's checkout reports it; with the provider's PDF receipt."""
        with self._lock:
            self.links[link_id]["status"] = "paid"
            if receipt_url is not None:
                self.links[link_id]["receipt_url"] = receipt_url

    def created(self) -> int:
        """How many distinct links were created (idempotent replays do not count)."""
        with self._lock:
            return len(self.links)

    # -- used by the handler threads ---------------------------------------------------

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_status
            return None

    def _create(self, body: JSON, key: str | None) -> tuple[int, JSON]:
        with self._lock:
            if key and key in self.by_idempotency_key:
                return 200, self.links[self.by_idempotency_key[key]]
            if not isinstance(body.get("amount"), int) or body["amount"] <= 0:
                return 422, {"error": "amount must be a positive integer"}
            link_id = f"pl_{next(self._ids):04d}"
            link = {
                "id": link_id,
                "url": f"{self.base_url}/pay/{link_id}",
                "status": "open",
                "amount": body["amount"],
                "currency": body.get("currency"),
                "reference": body.get("reference"),
                "expires_at": "2099-01-01T00:00:00Z",
            }
            self.links[link_id] = link
            if key:
                self.by_idempotency_key[key] = link_id
            return 201, link


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def fake(self) -> FakePaymentProvider:
        fake: FakePaymentProvider = self.server.fake  # type: ignore[attr-defined]
        return fake

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        fake = self.fake
        with fake._lock:
            fake.requests.append((method, self.path, body))
        if fake.delay:
            time.sleep(fake.delay)
        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            return self._send(401, {"error": "invalid api key"})
        if (status := fake._take_failure()) is not None:
            return self._send(status, {"error": "temporarily unavailable"})
        parts = self.path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "payment_links"]:
            return self._send(*fake._create(body, self.headers.get("Idempotency-Key")))
        if len(parts) >= 3 and parts[:2] == ["v1", "payment_links"]:
            link = fake.links.get(parts[2])
            if link is None:
                return self._send(404, {"error": "no such link"})
            if method == "POST" and parts[3:] == ["cancel"]:
                with fake._lock:
                    link["status"] = "cancelled"
                return self._send(200, link)
            if method == "GET" and len(parts) == 3:
                return self._send(200, link)
        return self._send(404, {"error": "not found"})

    def _send(self, status: int, payload: JSON) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
