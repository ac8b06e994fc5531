"""A ceiling on request bodies for every path, enforced before anything reads them.

FastAPI reads a whole body before it runs a route's dependencies, so without this an
unauthenticated client could make `/admin/api/*`, `/admin/login` or the SSE route hold
a body of any size in memory before the token check refused it. Here a declared
`Content-Length` over the limit is refused before the app is called at all, and a body
streamed without one (chunked) is counted as it passes and refused the moment it goes
over: nothing is buffered, so the limit costs a counter.

`/webhook` keeps its own, larger limit (`WA_AGENT_MAX_BODY_BYTES`: Meta batches many
messages into one delivery); every other path gets `OTHER_PATHS_LIMIT_BYTES`.

A pure ASGI middleware (not `BaseHTTPMiddleware`), like server/http/admin/security.py: it
never wraps the response and adds nothing measurable to the webhook's path.
"""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER_PATHS_LIMIT_BYTES = 128 * 1024
"""The largest legitimate body outside `/webhook` is an agent prompt edit
(`PATCH /admin/api/agents/{name}`, `system_prompt` up to 20,000 characters): at most
80 KB as UTF-8, about 120 KB when a client escapes every non-ASCII character as
`\\uXXXX`. Everything else the dashboard and scripts send (blocks, flags, replies,
replays, the login form, a streamed turn) is a few KB. 128 KiB fits the worst prompt
with room and is 8 times less than an attacker could park per request before."""


UPLOAD_LIMIT_BYTES = 5 * 1024 * 1024
"""A file an operator sends a customer (`POST /admin/api/conversations/{id}/media/upload`):
Meta's limit for a photo, and room for an invoice or a brochure. The route checks the
operator's token before it reads the body, so nobody unauthenticated parks this much."""


def is_upload_path(path: str) -> bool:
    return path.startswith("/admin/api/conversations/") and path.endswith("/media/upload")


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body goes over the limit.

    An `HTTPException` on purpose: FastAPI turns any other exception met while reading
    a body into a 400 "error parsing the body", and the exception handler answers this
    one with its 413 when a route was reading; the middleware answers it when it
    escapes earlier (another middleware reading the body)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        webhook_limit: int,
        limit: int = OTHER_PATHS_LIMIT_BYTES,
        webhook_path: str = "/webhook",
    ) -> None:
        self.app = app
        self.webhook_limit = webhook_limit
        self.limit = limit
        self.webhook_path = webhook_path

    def limit_for(self, path: str) -> int:
        if path == self.webhook_path:
            return self.webhook_limit
        return UPLOAD_LIMIT_BYTES if is_upload_path(path) else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await refuse(send, limit)
            return
        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if response_started:  # too late for a 413: the server closes the connection
                raise
            await refuse(send, limit)


def declared_length(scope: Scope) -> int | None:
    """The `Content-Length` header as a number, or None (absent, or not a number: the
    server itself refuses a malformed one)."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes are accepted here"


async def refuse(send: Send, limit: int) -> None:
    """413 with the same JSON shape as the app's own errors (`detail`)."""
    body = json.dumps({"detail": too_large(limit)}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
