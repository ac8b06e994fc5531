"""Web conversations: who may stream turns into which conversation.

The stream API token (`WA_AGENT_STREAM_API_TOKEN`) belongs to a web chat's backend, not
to any one visitor. With it, that backend creates a conversation (`POST
/v1/conversations`) and receives a token for that conversation alone; its page then
streams turns with that token (server/http/web_stream.py). A web conversation has a customer
key of its own, `web:<visitor>`, so its limits, budget, memories and blacklist entry
are never a WhatsApp customer's — and a WhatsApp thread, having no row in
`web_conversations`, cannot be driven from the web API with any token (404): the
backend's token used to run turns as any WhatsApp customer whose conversation id it
knew.

Per-conversation tokens are 256 random bits, stored as their SHA-256 (the database
never holds one that works) and shown once. Creating a conversation again for the same
`visitor` issues a new token for the visitor's one web conversation, and the old one
stops working. Wrong or unknown tokens, and conversations that are not web ones, count
against the client's address like any guessed credential (server/http/admin/throttle.py)
and are audited folded (`stream.auth_failed`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from server.http.admin.auth import bearer_token, configured_tokens, match_token, record_refusal
from server.http.admin.throttle import note_failure, refuse_if_throttled
from server.http.dependencies import services_of
from server.runner.conversations import open_conversation

log = structlog.get_logger(__name__)

router = APIRouter(tags=["streaming"])

WEB_PHONE_NUMBER_ID = "web"
"""The `phone_number_id` of web conversations: no WhatsApp business number is this."""
TOKEN_PREFIX = "wct_"


class NewWebConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visitor: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The backend's own id of the visitor; unset: a new anonymous visitor",
    )
    name: str | None = Field(default=None, max_length=100)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


async def _refuse(request: Request, reason: str, status: int, detail: str) -> HTTPException:
    """Count the failure against the address, audit it folded, and build the answer."""
    note_failure(request)
    await record_refusal(services_of(request), request, reason, surface="stream")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, detail, headers)


async def require_backend(request: Request) -> str:
    """The web chat backend (or an admin): the name of the token presented."""
    settings = services_of(request).settings
    tokens = configured_tokens(settings)
    if settings.stream_api_token is not None:
        tokens["stream-api"] = settings.stream_api_token.get_secret_value().encode()
    if not tokens:
        raise HTTPException(503, "web conversations disabled: set WA_AGENT_STREAM_API_TOKEN")
    await refuse_if_throttled(request, credential="stream_api_token")
    presented = bearer_token(request)
    name = match_token(presented, tokens) if presented else None
    if name is None:
        raise await _refuse(request, "invalid backend token", 401, "a valid token is required")
    return name


async def require_conversation_token(request: Request, conversation_id: uuid.UUID) -> str:
    """The web conversation's id when the bearer token is that conversation's own."""
    await refuse_if_throttled(request, credential="conversation_token")
    presented = bearer_token(request)
    async with services_of(request).pool.connection() as conn:
        cur = await conn.execute(
            "SELECT token_sha256 FROM web_conversations WHERE conversation_id = %s",
            (str(conversation_id),),
        )
        row = await cur.fetchone()
    if row is None:  # unknown, or a WhatsApp thread: the same answer for both
        raise await _refuse(request, "not a web conversation", 404, "no such web conversation")
    expected = bytes(row["token_sha256"])
    if presented is None or not hmac.compare_digest(_digest(presented), expected):
        raise await _refuse(request, "invalid conversation token", 401, "a valid token is required")
    return str(conversation_id)


Backend = Annotated[str, Depends(require_backend)]


@router.post("/v1/conversations", status_code=201)
async def create_web_conversation(
    request: Request, body: NewWebConversation, backend: Backend
) -> dict[str, str]:
    """A web conversation and the token that alone may stream into it (shown once)."""
    wa_id = f"web:{body.visitor or uuid.uuid4().hex}"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with services_of(request).pool.connection() as conn, conn.transaction():
        conversation_id = await open_conversation(conn, WEB_PHONE_NUMBER_ID, wa_id, body.name)
        await conn.execute(
            "INSERT INTO web_conversations (conversation_id, token_sha256, created_by)"
            " VALUES (%s, %s, %s) ON CONFLICT (conversation_id) DO UPDATE"
            " SET token_sha256 = EXCLUDED.token_sha256, created_by = EXCLUDED.created_by",
            (conversation_id, _digest(token), backend),
        )
    log.info("web_conversation.created", conversation_id=conversation_id, backend=backend)
    return {"conversation_id": conversation_id, "customer": wa_id, "token": token}
