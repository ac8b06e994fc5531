"""A local HTTP server that speaks the parts of Meta's Graph API the service uses.

Why a real HTTP server rather than a mocked transport: the worker runs in other processes
in the end-to-end tests and benchmarks, and the point is to exercise the real client
(httpx, retries, timeouts, error parsing) end to end. All state lives in the
``FakeGraphAPI`` object and is guarded by one lock, so tests in this process can script
failures and inspect what was sent no matter which process made the requests::

    with FakeGraphAPI() as graph:
        client = WhatsAppClient(base_url=graph.base_url, access_token=graph.access_token,
                                phone_number_id="PNID")
        graph.fail_next(1, status=429, retry_after=0)
        await client.send_text("15550001", "hi")
        assert graph.texts_to("15550001") == ["hi"]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.fakes.graph_media import (
    Media,
    MediaStore,
    Stream,
    outbound_media_problem,
    parse_upload,
)
from tests.fakes.graph_templates import template_page, template_problem

__all__ = ["FakeGraphAPI"]

JSON = dict[str, Any]

_DEFAULT_CODES = {429: 130429, 500: 131000, 503: 131016}
_TEXT_LIMIT = 4096


@dataclass(frozen=True)
class _Failure:
    status: int
    code: int | None
    retry_after: float | None
    title: str
    details: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGraphAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeGraphAPI:
    """Graph API on 127.0.0.1:<ephemeral port>: messages, read receipts, media."""

    def __init__(self, *, access_token: str = "test-token", delay: float = 0.0) -> None:
        self.access_token = access_token
        # Numbers whose token is their own (another business of the deployment): a call
        # for one of them with any other token is refused, as Meta refuses it.
        self.number_tokens: dict[str, str] = {}
        self.delay = delay  # seconds added before every response
        self._condition = threading.Condition(threading.RLock())
        self._wamids = itertools.count(1)
        self._sent: list[JSON] = []
        self._read_receipts: list[JSON] = []
        self._requests: list[JSON] = []
        self._failures: deque[_Failure] = deque()
        # An outage: every POST to /messages fails (or has its connection dropped) until then.
        self._outage_until = 0.0
        self._outage: _Failure | None = None
        self._outage_receipts = True
        self._sends_open = threading.Event()
        self._sends_open.set()
        self._held = 0
        self.media = MediaStore()
        # The business account's message templates (tests/fakes/graph_templates.py);
        # while it has none, any template send is accepted unchecked.
        self.templates: list[JSON] = []
        self.templates_per_page = 100
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGraphAPI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGraphAPI:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeGraphAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        code: int | None = None,
        retry_after: float | None = None,
        title: str = "Scripted failure",
        details: str | None = None,
    ) -> None:
        """Make the next ``n`` POSTs to ``/messages`` fail with a Graph-style error."""
        failure = _Failure(status, code, retry_after, title, details)
        with self._condition:
            self._failures.extend([failure] * n)

    def outage(
        self,
        seconds: float,
        *,
        status: int = 500,
        retry_after: float | None = None,
        drop: bool = False,
        receipts: bool = True,
    ) -> None:
        """For the next ``seconds``, every POST to ``/messages`` fails with ``status`` (and
        ``Retry-After``), or, with ``drop``, has its connection closed before any answer:
        the request may or may not have been delivered, as far as the client can tell.
        ``receipts=False`` lets read receipts through (only sends fail)."""
        status = 0 if drop else status
        failure = _Failure(status, _DEFAULT_CODES.get(status), retry_after, "Outage", None)
        with self._condition:
            self._outage = failure
            self._outage_until = time.monotonic() + seconds
            self._outage_receipts = receipts

    def end_outage(self) -> None:
        with self._condition:
            self._outage_until = 0.0

    def hold_sends(self) -> None:
        """Message sends (not read receipts) wait until ``release_sends``, then go on as
        if nothing happened: a client that gave up meanwhile never learns the result."""
        self._sends_open.clear()

    def release_sends(self) -> None:
        self._sends_open.set()

    @property
    def held_sends(self) -> int:
        """Requests waiting behind ``hold_sends`` right now."""
        with self._condition:
            return self._held

    def add_media(
        self,
        media_id: str,
        content: bytes,
        mime_type: str,
        *,
        filename: str | None = None,
        url: str | None = None,
        redirect_to: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """A file the media lookup and download serve. `url`: the lookup names this URL
        instead of the fake's own download; `redirect_to`: the download answers 302 there;
        `delay`: seconds the download waits first."""
        self.media.add(media_id, Media(content, mime_type, filename, url, redirect_to, delay))

    def add_streamed_media(
        self,
        media_id: str,
        mime_type: str,
        *,
        total_bytes: int,
        content_length: int | None = None,
        file_size: int | None = None,
    ) -> None:
        """A download of `total_bytes` generated bytes, with the Content-Length header and
        declared `file_size` given (None: left out), true or not; see `media.bytes_sent`."""
        stream = Stream(total_bytes, content_length, file_size)
        self.media.add(media_id, Media(b"", mime_type, stream=stream))

    def reset(self) -> None:
        """Forget everything recorded and scripted (the token and port stay)."""
        with self._condition:
            self._sent.clear()
            self._read_receipts.clear()
            self._requests.clear()
            self._failures.clear()
            self.media.clear()
            self.templates.clear()
            self.delay = 0.0
            self._outage_until = 0.0
            self._held = 0
        self._sends_open.set()

    # ------------------------------------------------------------------ inspection

    @property
    def sent(self) -> list[JSON]:
        """Accepted outbound messages: the payload plus ``wamid``, ``phone_number_id``,
        ``received_at`` (``time.perf_counter()``) and ``received_at_wall`` (``time.time()``)."""
        with self._condition:
            return list(self._sent)

    @property
    def read_receipts(self) -> list[JSON]:
        with self._condition:
            return list(self._read_receipts)

    @property
    def requests(self) -> list[JSON]:
        """Every request seen, accepted or not: ``method``, ``path``, ``status``."""
        with self._condition:
            return list(self._requests)

    @property
    def message_attempts(self) -> int:
        """POSTs to ``/messages`` including failed ones: how many tries a send took."""
        with self._condition:
            return sum(
                1
                for request in self._requests
                if request["method"] == "POST" and request["path"].endswith("/messages")
            )

    def sent_to(self, wa_id: str) -> list[JSON]:
        with self._condition:
            return [message for message in self._sent if message.get("to") == wa_id]

    def texts_to(self, wa_id: str) -> list[str]:
        """What the customer would read, in arrival order: text bodies and the body text of
        interactive messages (other kinds are left out)."""
        texts: list[str] = []
        for message in self.sent_to(wa_id):
            if message.get("type") == "text":
                texts.append(str(message["text"]["body"]))
            elif message.get("type") == "interactive":
                texts.append(str(message["interactive"]["body"]["text"]))
        return texts

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, *, what: str = ""
    ) -> bool:
        """Block until ``predicate()`` holds (re-checked on every request); for sync tests
        and threads. From a coroutine use :meth:`wait_for_async` so the loop keeps going."""
        with self._condition:
            if self._condition.wait_for(predicate, timeout=timeout):
                return True
        raise AssertionError(self._timeout_message(timeout, what or _describe(predicate)))

    async def wait_for_async(
        self, predicate: Callable[[], bool], within: float = 5.0, *, what: str = ""
    ) -> bool:
        """:meth:`wait_for` for coroutines: polls without blocking the event loop, which
        may be the one running the client under test."""
        deadline = time.monotonic() + within
        while True:
            with self._condition:
                if predicate():
                    return True
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(within, what or _describe(predicate)))
            await asyncio.sleep(0.01)

    def _timeout_message(self, timeout: float, what: str) -> str:
        with self._condition:
            recipients = sorted({str(message.get("to")) for message in self._sent})
            return (
                f"FakeGraphAPI: {what} not met within {timeout}s; "
                f"{len(self._sent)} message(s) sent (to {recipients}), "
                f"{len(self._read_receipts)} read receipt(s), "
                f"{len(self._failures)} scripted failure(s) left"
            )

    # ------------------------------------------------------------------ called by handler

    def _log_request(self, method: str, path: str, status: int) -> None:
        with self._condition:
            self._requests.append({"method": method, "path": path, "status": status})
            self._condition.notify_all()

    def _next_failure(self, receipt: bool = False) -> _Failure | None:
        with self._condition:
            if self._failures:
                return self._failures.popleft()
            if receipt and not self._outage_receipts:
                return None
            if self._outage is not None and time.monotonic() < self._outage_until:
                return self._outage
            return None

    def _wait_while_held(self, receipt: bool) -> None:
        if receipt or self._sends_open.is_set():
            return
        with self._condition:
            self._held += 1
            self._condition.notify_all()
        try:
            self._sends_open.wait()
        finally:
            with self._condition:
                self._held -= 1

    def _record(self, phone_number_id: str, payload: JSON) -> str | None:
        """Keep an accepted POST: a read receipt, or a message (given a fresh wamid)."""
        stamped = {
            **payload,
            "phone_number_id": phone_number_id,
            "received_at": time.perf_counter(),
            "received_at_wall": time.time(),
        }
        with self._condition:
            wamid = None
            if payload.get("status") == "read":
                self._read_receipts.append(stamped)
            else:
                wamid = f"wamid.fake-{next(self._wamids)}"
                self._sent.append({**stamped, "wamid": wamid})
            self._condition.notify_all()
            return wamid

    def _media_by_id(self, media_id: str) -> Media | None:
        return self.media.get(media_id)


def _describe(predicate: Callable[[], bool]) -> str:
    return getattr(predicate, "__name__", "condition")


def graph_error(
    status: int,
    message: str,
    *,
    code: int | None = None,
    details: str | None = None,
    subcode: int | None = None,
) -> JSON:
    """The ``{"error": {...}}`` body Graph answers failures with."""
    error: JSON = {
        "message": message,
        "type": "OAuthException",
        "code": code if code is not None else _DEFAULT_CODES.get(status, 100),
        "fbtrace_id": "AFakeTraceId",
    }
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx pools connections
    # Headers and body are written separately; with Nagle on, the body waits ~40 ms for
    # the client's delayed ACK on a kept-alive connection. Meta does not do that.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; ``FakeGraphAPI.requests`` has them."""

    @property
    def fake(self) -> FakeGraphAPI:
        return self.server.fake

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        if self.fake.delay > 0:
            time.sleep(self.fake.delay)
        segments = [segment for segment in self.path.split("?")[0].split("/") if segment]
        if not self._authorised(segments):
            self._send_json(
                401,
                graph_error(
                    401, "Invalid OAuth access token - Cannot parse access token", code=190
                ),
            )
        elif method == "POST" and len(segments) == 3 and segments[2] == "messages":
            self._post_message(segments[1], body)
        elif method == "POST" and len(segments) == 3 and segments[2] == "media":
            self._upload_media(body)
        elif method == "GET" and len(segments) == 3 and segments[2] == "message_templates":
            query = self.path.partition("?")[2]
            path = self.path.partition("?")[0]
            self._send_json(
                200, template_page(self.fake.templates, self.fake.base_url, path, query)
            )
        elif method == "GET" and len(segments) == 2 and segments[0] == "media-download":
            self._download_media(segments[1])
        elif method == "GET" and len(segments) == 2:
            self._media_info(segments[1])
        else:
            self._send_json(404, graph_error(404, f"Unknown path components: {self.path}"))

    def _authorised(self, segments: list[str]) -> bool:
        number = segments[1] if len(segments) == 3 else None
        token = self.fake.number_tokens.get(number or "", self.fake.access_token)
        return self.headers.get("Authorization") == f"Bearer {token}"

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _post_message(self, phone_number_id: str, raw: bytes) -> None:
        receipt = b'"read"' in raw and b'"status"' in raw
        self.fake._wait_while_held(receipt)
        failure = self.fake._next_failure(receipt)
        if failure is not None and failure.status == 0:
            self.fake._log_request(self.command, self.path, 0)
            self.close_connection = True  # dropped: no answer at all
            return
        if failure is not None:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            error = graph_error(
                failure.status, failure.title, code=failure.code, details=failure.details
            )
            self._send_json(failure.status, error, headers)
            return
        payload, problem = _validate_message(raw)
        kind = payload.get("type")
        if problem is None and kind in ("image", "document", "location"):
            problem = outbound_media_problem(str(kind), payload[str(kind)], self.fake.media)
        refused = None
        if problem is None and payload.get("type") == "template" and self.fake.templates:
            refused = template_problem(self.fake.templates, payload)
        if problem is not None:
            self._send_json(400, graph_error(400, problem, code=100))
        elif refused is not None:
            self._send_json(400, graph_error(400, refused[1], code=refused[0]))
        elif (wamid := self.fake._record(phone_number_id, payload)) is None:
            self._send_json(200, {"success": True})
        else:
            to = payload["to"]
            contacts = [{"input": to, "wa_id": to}]
            answer = {
                "messaging_product": "whatsapp",
                "contacts": contacts,
                "messages": [{"id": wamid}],
            }
            self._send_json(200, answer)

    def _upload_media(self, body: bytes) -> None:
        media, problem = parse_upload(self.headers.get("Content-Type", ""), body)
        if media is None:
            self._send_json(400, graph_error(400, problem or "bad upload", code=100))
            return
        media_id = f"{next(self.fake._wamids)}0{len(media.content)}"
        self.fake.media.add(media_id, media)
        self._send_json(200, {"id": media_id})

    def _media_info(self, media_id: str) -> None:
        media = self.fake._media_by_id(media_id)
        if media is None:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist"
            self._send_json(400, graph_error(400, message, code=100, subcode=33))
            return
        self._send_json(200, self.fake.media.info(media_id, media, self.fake.base_url))

    def _download_media(self, media_id: str) -> None:
        media = self.fake._media_by_id(media_id)
        if media is None:
            self._send_json(404, graph_error(404, "Media not found", code=100))
            return
        with self.fake.media.downloading():
            if media.delay > 0:
                time.sleep(media.delay)
            if media.redirect_to is not None:
                self._send(302, b"", "text/plain", {"Location": media.redirect_to})
            elif media.stream is not None:
                self._send_stream(media_id, media.stream, media.mime_type)
            else:
                self._send(200, media.content, media.mime_type)

    def _send_stream(self, media_id: str, stream: Stream, content_type: str) -> None:
        """Headers as scripted, then the generated body; the connection is closed after it
        (without a Content-Length that is what ends the body, and a lying one leaves the
        connection unusable)."""
        self.fake._log_request(self.command, self.path, 200)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if stream.content_length is not None:
            self.send_header("Content-Length", str(stream.content_length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.fake.media.write_stream(media_id, stream, self.wfile)

    def _send_json(self, status: int, body: JSON, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: int, content: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        # Logged before the response leaves, so a client that has its answer can rely on
        # the request being counted.
        self.fake._log_request(self.command, self.path, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)


def _validate_message(raw: bytes) -> tuple[JSON, str | None]:
    """Check the few things Meta rejects with (#100); returns the payload and a problem.

    A customer is named by ``to`` (a phone number) or ``recipient`` (a business-scoped
    user id, ``US.1349...``); Meta reads ``to`` as a phone number and prefers it when
    both are present, so a BSUID in ``to`` is refused. A message addressed only by
    ``recipient`` is recorded under ``to`` as well, so ``sent_to()`` finds it by the one
    key the service knows the customer by; ``recipient`` stays as it was sent.
    https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
    """
    try:
        payload = json.loads(raw or b"null")
    except ValueError:
        return {}, "(#100) Request body is not valid JSON"
    if not isinstance(payload, dict):
        return {}, "(#100) Request body must be a JSON object"
    if payload.get("messaging_product") != "whatsapp":
        return payload, "(#100) The parameter messaging_product is required and must be whatsapp"
    if payload.get("status") == "read":
        if not isinstance(payload.get("message_id"), str):
            return payload, "(#100) The parameter message_id is required"
        return payload, None
    kind = payload.get("type", "text")
    to, recipient = payload.get("to"), payload.get("recipient")
    if isinstance(to, str) and to[:2].isupper() and to[2:3] == ".":  # US.1349...
        return payload, "(#100) Param to must be a phone number; use recipient for a user ID"
    if not to and isinstance(recipient, str) and recipient:
        payload = {**payload, "to": recipient}
    if not payload.get("to"):
        return payload, "(#100) The parameter to is required"
    if not isinstance(payload.get(kind), dict):
        return payload, f"(#100) The parameter {kind} is required"
    body = payload[kind].get("body") if kind == "text" else None
    if kind == "text" and (not isinstance(body, str) or len(body) > _TEXT_LIMIT):
        return payload, "(#100) Param text['body'] must be a string of at most 4096 characters"
    return payload, None
