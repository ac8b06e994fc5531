"""The human inbox: conversations waiting for a person, their transcript, and the
operator's two actions — reply, and hand back to the bot."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from server.audit import record_audit
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.runner.conversations import find_conversation
from server.runner.queue import OPERATOR_RELEASE_TASK, OPERATOR_REPLY_TASK, enqueue_operator_action
from server.runner.transport import answer_queue
from server.services import Services

router = APIRouter(tags=["conversations"])

Admin = Annotated[str, Depends(require_admin)]


class OperatorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


class ActionAccepted(BaseModel):
    action_id: str
    job_id: int


@router.get("/conversations")
async def list_conversations(
    request: Request,
    _: Admin,
    status: Literal["active", "escalated"] | None = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    async with services_of(request).pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, c.wa_id, k.profile_name, c.status, c.last_inbound_at, c.updated_at"
            " FROM agent_conversations c JOIN contacts k USING (wa_id)"
            " WHERE %(status)s::text IS NULL OR c.status = %(status)s"
            " ORDER BY c.updated_at DESC LIMIT %(limit)s",
            {"status": status, "limit": limit},
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
    """Queued under the conversation's lock; sent to WhatsApp and kept in the thread."""
    return await _queue_action(
        request, conversation_id, admin, OPERATOR_REPLY_TASK, "conversation.reply", text=body.text
    )


@router.post("/conversations/{conversation_id}/release", status_code=202)
async def hand_back_to_bot(
    request: Request, conversation_id: uuid.UUID, admin: Admin
) -> ActionAccepted:
    return await _queue_action(
        request, conversation_id, admin, OPERATOR_RELEASE_TASK, "conversation.release"
    )


async def _queue_action(
    request: Request,
    conversation_id: uuid.UUID,
    admin: str,
    task: str,
    audit_action: str,
    **arguments: str,
) -> ActionAccepted:
    """Only a conversation waiting for a person takes operator actions; each gets an id
    now, so its job is idempotent when retried."""
    services = services_of(request)
    queue_name = await _require_escalated(services, conversation_id)
    action_id = str(uuid.uuid4())
    job_id = await enqueue_operator_action(
        services.queue,
        task,
        str(conversation_id),
        queue_name,
        action_id=action_id,
        operator=admin,
        **arguments,
    )
    await _audit(request, admin, audit_action, conversation_id)
    return ActionAccepted(action_id=action_id, job_id=job_id)


async def _require_escalated(services: Services, conversation_id: uuid.UUID) -> str:
    """The queue of the conversation's channel, once it is known to wait for a person."""
    found = await find_conversation(services.pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    if found.status != "escalated":
        raise HTTPException(409, "the conversation is not waiting for a person")
    return answer_queue(found.phone_number_id, found.wa_id)


async def _audit(request: Request, admin: str, action: str, target: uuid.UUID) -> None:
    async with services_of(request).pool.connection() as conn:
        await record_audit(
            conn,
            actor=admin,
            action=action,
            target=str(target),
            details={},
            remote_addr=request.client.host if request.client else None,
        )
