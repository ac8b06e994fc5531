"""The human inbox: conversations waiting for a person, their transcript, and the
operator's two actions — reply, and hand back to the bot.

A reply is refused (409) once WhatsApp's 24-hour customer-service window has closed
(server/runner/service_window.py): Meta would refuse the send, and the operator would
only learn it from a failed delivery nobody shows them. The refusal names the approved
templates that can reach the customer instead (server/http/admin/template_routes.py)."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.audit import record_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.operations.operator_inbox import canned_reply
from server.outcomes.template_catalog import list_templates
from server.runner.conversations import ConversationRow, find_conversation
from server.runner.queue import OPERATOR_RELEASE_TASK, OPERATOR_REPLY_TASK, enqueue_operator_action
from server.runner.service_window import service_window
from server.runner.transport import answer_queue
from server.services import Services

router = APIRouter(tags=["conversations"])

Admin = Annotated[str, Depends(require_admin)]


class OperatorReply(BaseModel):
    """The reply's text, or the name of a canned reply (one of the two)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=4096)
    canned: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_of_the_two(self) -> OperatorReply:
        if (self.text is None) == (self.canned is None):
            raise ValueError("give either 'text' or 'canned', not both")
        return self


class ActionAccepted(BaseModel):
    action_id: str
    job_id: int


@router.get("/conversations")
async def list_conversations(
    request: Request,
    _: Admin,
    status: Literal["active", "escalated"] | None = None,
    assigned_to: str | None = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    async with services_of(request).pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, c.wa_id, k.profile_name, c.status, c.assigned_to,"
            " c.last_inbound_at, c.updated_at"
            " FROM agent_conversations c JOIN contacts k USING (wa_id)"
            " WHERE (%(status)s::text IS NULL OR c.status = %(status)s)"
            " AND (%(assignee)s::text IS NULL OR c.assigned_to = %(assignee)s)"
            " ORDER BY c.updated_at DESC LIMIT %(limit)s",
            {"status": status, "assignee": assigned_to, "limit": limit},
        )
        return [dict(row) for row in await cur.fetchall()]


@router.get("/conversations/{conversation_id}/messages")
async def transcript(
    request: Request, conversation_id: uuid.UUID, _: Admin
) -> list[dict[str, Any]]:
    async with services_of(request).pool.connection() as conn:
        cur = await conn.execute(
            "SELECT role, agent, content, created_at FROM agent_messages"
            " WHERE conversation_id = %s ORDER BY id",
            (conversation_id,),
        )
        return [dict(row) for row in await cur.fetchall()]


@router.post("/conversations/{conversation_id}/messages", status_code=202)
async def reply_as_operator(
    request: Request, conversation_id: uuid.UUID, body: OperatorReply, admin: Admin
) -> ActionAccepted:
    """Queued under the conversation's lock; sent to WhatsApp and kept in the thread.
    409 when the conversation does not wait for a person, or its window has closed."""
    services = services_of(request)
    found = await require_escalated(services, conversation_id)
    await require_open_window(services, found)
    text = body.text
    if body.canned is not None:
        text = await canned_reply(services.pool, body.canned)
        if text is None:
            raise HTTPException(404, f"no canned reply {body.canned!r}")
    assert text is not None  # the model requires one of the two
    return await queue_action(
        request, found, admin, OPERATOR_REPLY_TASK, "conversation.reply", text=text
    )


@router.post("/conversations/{conversation_id}/release", status_code=202)
async def hand_back_to_bot(
    request: Request, conversation_id: uuid.UUID, admin: Admin
) -> ActionAccepted:
    found = await require_escalated(services_of(request), conversation_id)
    return await queue_action(request, found, admin, OPERATOR_RELEASE_TASK, "conversation.release")


async def queue_action(
    request: Request,
    found: ConversationRow,
    admin: str,
    task: str,
    audit_name: str,
    **arguments: str,
) -> ActionAccepted:
    """An operator's action, checked by the caller, in the conversation's channel's
    queue; each gets an id now, so its job is idempotent when retried."""
    action_id = str(uuid.uuid4())
    job_id = await enqueue_operator_action(
        services_of(request).queue,
        task,
        found.conversation_id,
        answer_queue(found.phone_number_id, found.wa_id),
        action_id=action_id,
        operator=admin,
        **arguments,
    )
    await audit_action(request, admin, audit_name, uuid.UUID(found.conversation_id))
    return ActionAccepted(action_id=action_id, job_id=job_id)


async def require_escalated(services: Services, conversation_id: uuid.UUID) -> ConversationRow:
    """The conversation, once it is known to wait for a person."""
    found = await find_conversation(services.pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    if found.status != "escalated":
        raise HTTPException(409, "the conversation is not waiting for a person")
    return found


async def require_open_window(services: Services, found: ConversationRow) -> None:
    """Refuse a free-form reply WhatsApp would refuse: 24 hours after the customer's
    last message only an approved template reaches them."""
    window = await service_window(services.pool, found)
    if window is None or window.is_open():
        return
    closed = window.closes_at
    when = f" at {closed.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if closed is not None else ""
    raise HTTPException(
        409,
        f"The 24-hour customer-service window closed{when}: WhatsApp no longer delivers"
        " a free-form reply to this customer. Only an approved template message can"
        f" reach them now: {await _templates_offered(services, found)}",
    )


async def _templates_offered(services: Services, found: ConversationRow) -> str:
    """What the operator can send instead, and how."""
    sendable = await list_templates(services.pool, sendable_only=True)
    if not sendable:
        return (
            "none is known yet (POST /admin/api/templates/sync, or declare them in"
            " WA_AGENT_TEMPLATES_FILE)."
        )
    names = ", ".join(
        f"{t.name} ({t.language}, {len(t.variables)} value(s))" for t in sendable[:20]
    )
    return f"POST /admin/api/conversations/{found.conversation_id}/template with one of {names}."


async def audit_action(request: Request, admin: str, action: str, target: uuid.UUID) -> None:
    async with services_of(request).pool.connection() as conn:
        await record_audit(
            conn,
            actor=admin,
            action=action,
            target=str(target),
            details={},
            remote_addr=request.client.host if request.client else None,
        )
