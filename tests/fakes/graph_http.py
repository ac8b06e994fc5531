"""The HTTP side of the fake Graph API: routing a request, Meta's checks and error
bodies, and the handler that answers from the fake's state (tests/fakes/graph_api.py)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from tests.fakes.graph_media import (
    MediaStore,
    Stream,
    outbound_media_problem,
    parse_upload,
)
from tests.fakes.graph_templates import template_page, template_problem

JSON = dict[str, Any]

DEFAULT_CODES = {429: 130429, 500: 131000, 503: 131016}
_TEXT_LIMIT = 4096


@dataclass(frozen=True)
class Failure:
    status: int
    code: int | None
    retry_after: float | None
    title: str
    details: str | None


class GraphState(Protocol):
    """What the handler reads and records through: the fake's state (FakeGraphAPI)."""

    access_token: str
    number_tokens: dict[str, str]
    delay: float
    media: MediaStore
    templates: list[JSON]

    @property
    def base_url(self) -> str: ...

    def log_request(self, method: str, path: str, status: int) -> None: ...

    def next_failure(self, receipt: bool = False) -> Failure | None: ...

    def wait_while_held(self, receipt: bool) -> None: ...

    def record(self, phone_number_id: str, payload: JSON) -> str | None: ...

    def next_media_id(self, size: int) -> str: ...


class GraphServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: GraphState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


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
        "code": code if code is not None else DEFAULT_CODES.get(status, 100),
        "fbtrace_id": "AFakeTraceId",
    }
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class GraphHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx pools connections
    # Headers and body are written separately; with Nagle on, the body waits ~40 ms for
    # the client's delayed ACK on a kept-alive connection. Meta does not do that.
    disable_nagle_algorithm = True
    server: GraphServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; the fake's ``requests`` has them."""

    @property
    def fake(self) -> GraphState:
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
        self.fake.wait_while_held(receipt)
        failure = self.fake.next_failure(receipt)
        if failure is not None and failure.status == 0:
            self.fake.log_request(self.command, self.path, 0)
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
        payload, problem = validate_message(raw)
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
        elif (wamid := self.fake.record(phone_number_id, payload)) is None:
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
        media_id = self.fake.next_media_id(len(media.content))
        self.fake.media.add(media_id, media)
        self._send_json(200, {"id": media_id})

    def _media_info(self, media_id: str) -> None:
        media = self.fake.media.get(media_id)
        if media is None:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist"
            self._send_json(400, graph_error(400, message, code=100, subcode=33))
            return
        self._send_json(200, self.fake.media.info(media_id, media, self.fake.base_url))

    def _download_media(self, media_id: str) -> None:
        media = self.fake.media.get(media_id)
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
        self.fake.log_request(self.command, self.path, 200)
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
        self.fake.log_request(self.command, self.path, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)


def validate_message(raw: bytes) -> tuple[JSON, str | None]:
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
