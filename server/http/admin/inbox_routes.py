"""The operator's inbox beside the conversation: taking it over from the bot, internal
notes, an assignee, and the business's canned replies
(server/operations/operator_inbox.py). A note is never sent to the customer; a canned
reply is sent by naming it in an operator reply
(`POST /admin/api/conversations/{id}/messages` with `{"canned": NAME}`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from server.http.admin.auth import require_admin
from server.http.admin.conversation_routes import ActionAccepted, audit_action, queue_action
from server.http.dependencies import services_of
from server.operations.operator_inbox import (
    Note,
    add_note,
    canned_replies,
    delete_canned_reply,
    notes_of,
    save_canned_reply,
)
from server.runner.conversations import (
    ConversationRow,
    assign,
    find_conversation,
    mark_taken_over,
)
from server.runner.queue import OPERATOR_TAKEOVER_TASK

router = APIRouter(tags=["inbox"])

Admin = Annotated[str, Depends(require_admin)]
CannedName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class NoteText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


class Assignee(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str | None = Field(default=None, min_length=1, max_length=128)


class CannedText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


async def _conversation(request: Request, conversation_id: uuid.UUID) -> ConversationRow:
    found = await find_conversation(services_of(request).pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    return found


@router.get("/conversations/{conversation_id}/notes")
async def list_notes(request: Request, conversation_id: uuid.UUID, _: Admin) -> list[Note]:
    found = await _conversation(request, conversation_id)
    return await notes_of(services_of(request).pool, found.conversation_id)


@router.post("/conversations/{conversation_id}/notes", status_code=201)
async def write_note(
    request: Request, conversation_id: uuid.UUID, body: NoteText, admin: Admin
) -> Note:
    """For the team only: kept with the conversation, never sent to the customer."""
    found = await _conversation(request, conversation_id)
    note = await add_note(services_of(request).pool, found.conversation_id, admin, body.text)
    await audit_action(request, admin, "conversation.note", conversation_id)
    return note


@router.put("/conversations/{conversation_id}/assignee")
async def set_assignee(
    request: Request, conversation_id: uuid.UUID, body: Assignee, admin: Admin
) -> dict[str, str | None]:
    found = await _conversation(request, conversation_id)
    await assign(services_of(request).pool, found.conversation_id, body.operator)
    await audit_action(request, admin, "conversation.assign", conversation_id)
    return {"assigned_to": body.operator}


@router.post("/conversations/{conversation_id}/takeover", status_code=202)
async def take_over(request: Request, conversation_id: uuid.UUID, admin: Admin) -> ActionAccepted:
    """The bot stops at once: a turn already running finishes without sending, and the
    thread waits for a person (as after an escalation) until handed back (`.../release`).
    409 when it already waits for a person."""
    found = await _conversation(request, conversation_id)
    if not await mark_taken_over(services_of(request).pool, found.conversation_id, admin):
        raise HTTPException(409, "the conversation already waits for a person")
    return await queue_action(
        request, found, admin, OPERATOR_TAKEOVER_TASK, "conversation.takeover"
    )


@router.get("/canned-replies")
async def list_canned_replies(request: Request, _: Admin) -> list[dict[str, Any]]:
    return await canned_replies(services_of(request).pool)


@router.put("/canned-replies/{name}", status_code=204)
async def put_canned_reply(
    request: Request, name: CannedName, body: CannedText, admin: Admin
) -> Response:
    await save_canned_reply(services_of(request).pool, name, body.text, admin)
    return Response(status_code=204)


@router.delete("/canned-replies/{name}", status_code=204)
async def remove_canned_reply(request: Request, name: CannedName, _: Admin) -> Response:
    if not await delete_canned_reply(services_of(request).pool, name):
        raise HTTPException(404, f"no canned reply {name!r}")
    return Response(status_code=204)
