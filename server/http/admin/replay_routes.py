"""Replay from the admin API: the same as `wa-agent replay`, for the dashboard.

    GET  /admin/api/conversations/{id}/checkpoints        the history, newest first
    POST /admin/api/conversations/{id}/replay   {"checkpoint_id", "fork_text" | "state", "send"}

Nothing reaches the customer unless `send` is true; every replay is audited with the
admin's name and address, before anything is sent (server/operations/conversation_replay.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from graph.composition.replay import ReplayError, ReplayNotFound
from server.http.admin.auth import require_admin
from server.http.dependencies import services_of
from server.operations.conversation_replay import ReplayRequest, list_checkpoints, run_replay

router = APIRouter(tags=["replay"])

Admin = Annotated[str, Depends(require_admin)]


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_id: str | None = Field(default=None, min_length=1, max_length=64)
    # Set: a fork of the turn with this customer message instead of the recorded one.
    fork_text: str | None = Field(default=None, min_length=1, max_length=4096)
    # Or: state fields written over the checkpoint before replaying from it.
    state: dict[str, Any] | None = None
    send: bool = False


@router.get("/conversations/{conversation_id}/checkpoints")
async def checkpoints(
    request: Request,
    conversation_id: uuid.UUID,
    _: Admin,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    try:
        history = await list_checkpoints(
            services_of(request).replays(), str(conversation_id), limit
        )
    except ReplayError as exc:
        raise HTTPException(404, str(exc)) from exc
    return [checkpoint.as_dict() for checkpoint in history]


@router.post("/conversations/{conversation_id}/replay")
async def replay(
    request: Request, conversation_id: uuid.UUID, body: ReplayBody, admin: Admin
) -> dict[str, Any]:
    replays = services_of(request).replays()
    replay_request = ReplayRequest(
        str(conversation_id), body.checkpoint_id, body.fork_text, body.send, body.state
    )
    address = request.client.host if request.client else None
    try:
        result, sent = await run_replay(replays, replay_request, actor=admin, remote_addr=address)
    except ReplayError as exc:
        raise HTTPException(404 if isinstance(exc, ReplayNotFound) else 422, str(exc)) from exc
    return {**result.as_dict(), "sent": sent}
