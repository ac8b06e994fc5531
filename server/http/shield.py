"""The webhook's fast lane for floods: drop what the ingress guard would drop anyway,
before FastAPI, pydantic or the database see it.

A sender over the ingress rate (`ingress.IngressGuard`) has every further delivery
refused with 429 and not stored; going through the whole request stack only to decide
that costs most of a millisecond of CPU per message, which at 1,000 messages a second
is half a core taken from every other customer's webhook. This ASGI middleware reads
the body, checks the signature exactly as `/webhook` does, and when every message in
the body comes from a sender whose bucket is empty (and the body carries no delivery
statuses), answers 429 itself (Meta delivers it again later: nothing is lost).
Anything else — unsigned, malformed, mixed, or from a sender with tokens left — goes to
`/webhook` untouched, body replayed byte for byte.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.abuse.ingress import DROPPED
from server.telemetry import WEBHOOK_LATENCY, WEBHOOK_REQUESTS

log = structlog.get_logger(__name__)


def message_senders(document: Any) -> list[str] | None:
    """The sender of every message in a delivery, or None when the body carries anything
    else (statuses, a shape this fast lane does not know): those take the full path."""
    senders: list[str] = []
    try:
        for entry in document["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                if change.get("field") != "messages" or value.get("statuses"):
                    return None
                for message in value["messages"]:
                    sender = message.get("from") or message.get("from_user_id")
                    if not isinstance(sender, str) or not sender:
                        return None
                    senders.append(sender)
    except (KeyError, TypeError, AttributeError):
        return None
    return senders or None


class FloodShield:
    def __init__(self, app: ASGIApp, path: str = "/webhook") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")
        services = getattr(app.state, "services", None) if app is not None else None
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or services is None
            or services.settings.ingress_rate <= 0
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        consumed, body = await _read_body(receive)
        dropped = await self._dropped(scope, services, body) if body is not None else 0
        if dropped:
            await _answer(send, dropped)
            WEBHOOK_LATENCY.observe(time.perf_counter() - started)
            WEBHOOK_REQUESTS.labels(status="429").inc()
            return
        await self.app(scope, _replay(consumed, receive), send)

    async def _dropped(self, scope: Scope, services: Any, body: bytes) -> int:
        """How many messages were dropped here; 0 = the request goes to `/webhook`."""
        headers = dict(scope.get("headers") or [])
        signature = headers.get(b"x-hub-signature-256", b"").decode("latin-1")
        if not await services.numbers.signers(body, signature):
            return 0
        try:
            senders = message_senders(json.loads(body))
        except (ValueError, RecursionError):
            return 0
        guard = services.abuse.ingress
        if senders is None or not all(guard.exhausted(sender) for sender in senders):
            return 0
        client = scope.get("client")
        for sender in senders:
            DROPPED.labels(reason="ingress_rate").inc()
            await services.abuse.dropped_at_ingress(sender, client[0] if client else None)
        return len(senders)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Every message taken from `receive` (to replay them), and the body — or None when
    the client went away. Its size is capped outside (server/http/body_limit.py)."""
    consumed: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        consumed.append(message)
        if message["type"] != "http.request":
            return consumed, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return consumed, b"".join(chunks)


def _replay(consumed: list[Message], receive: Receive) -> Receive:
    pending = list(consumed)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer(send: Send, dropped: int) -> None:
    counts = {"stored": 0, "duplicates": 0, "enqueued": 0, "statuses": 0, "dropped": dropped}
    body = json.dumps(counts).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"60"),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
