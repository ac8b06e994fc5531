"""An operator sends a customer a photo, a document or a place: by link, or by a file
uploaded to the Cloud API with the conversation's own number.

Like a typed reply, it needs the conversation to wait for a person and its 24-hour
window to be open, and it goes through the outbox (at most once, in order) and into
the thread, so the bot knows what was sent when it takes over again."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from graph.state import LocationReply, MediaReply
from server.http.admin.auth import require_admin
from server.http.admin.conversation_routes import (
    ActionAccepted,
    queue_action,
    require_escalated,
    require_open_window,
)
from server.http.body_limit import UPLOAD_LIMIT_BYTES
from server.http.dependencies import services_of
from server.runner.queue import OPERATOR_MEDIA_TASK
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.outbound import reply_payload

router = APIRouter(tags=["conversations"])

Admin = Annotated[str, Depends(require_admin)]

# What WhatsApp shows as a photo; any other file goes as a document.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png"})


class MediaSend(BaseModel):
    """A photo or document by `link`, or a place by `latitude` and `longitude`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["image", "document", "location"]
    link: str | None = Field(default=None, max_length=2000)
    caption: str | None = Field(default=None, max_length=1024)
    filename: str | None = Field(default=None, max_length=240)
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = Field(default=None, max_length=1000)
    address: str | None = Field(default=None, max_length=1000)


@router.post("/conversations/{conversation_id}/media", status_code=202)
async def send_media(
    request: Request, conversation_id: uuid.UUID, body: MediaSend, admin: Admin
) -> ActionAccepted:
    """202 once queued; 422 for a message WhatsApp would refuse (no link, a caption too
    long, a place off the map), 409 as for a typed reply."""
    reply = _as_reply(body)
    _check(reply)
    services = services_of(request)
    found = await require_escalated(services, conversation_id)
    await require_open_window(services, found)
    return await queue_action(
        request, found, admin, OPERATOR_MEDIA_TASK, "conversation.media", media=json.dumps(reply)
    )


@router.post("/conversations/{conversation_id}/media/upload", status_code=202)
async def upload_and_send(
    request: Request, conversation_id: uuid.UUID, admin: Admin
) -> ActionAccepted:
    """A form with `file` (and an optional `caption`): uploaded to the Cloud API from the
    conversation's number, then sent like `/media`. The body is read only once the
    operator's token was checked (a dependency); 502 when Meta refuses the upload."""
    services = services_of(request)
    found = await require_escalated(services, conversation_id)
    await require_open_window(services, found)
    whatsapp = await services.numbers.client_for(found.phone_number_id)
    if whatsapp is None:
        raise HTTPException(409, "this conversation's number cannot send files from here")
    async with request.form(max_files=1, max_fields=2) as form:
        file, caption = form.get("file"), form.get("caption")
        if not isinstance(file, UploadFile) or not file.filename:
            raise HTTPException(422, "a form field 'file' with a file is required")
        content = await file.read(UPLOAD_LIMIT_BYTES + 1)
        mime_type = (file.content_type or "application/octet-stream").split(";")[0].strip()
        filename = file.filename[-240:]
    if not content:
        raise HTTPException(422, "the file is empty")
    reply: MediaReply = {"kind": "image" if mime_type in PHOTO_TYPES else "document"}
    if isinstance(caption, str) and caption.strip():
        reply["caption"] = caption.strip()[:1024]
    if reply["kind"] == "document":
        reply["filename"] = filename
    try:
        reply["media_id"] = await whatsapp.upload_media(content, mime_type, filename)
    except WhatsAppError as exc:
        raise HTTPException(502, f"the Cloud API refused the file: {exc.title}") from None
    return await queue_action(
        request, found, admin, OPERATOR_MEDIA_TASK, "conversation.media", media=json.dumps(reply)
    )


def _as_reply(body: MediaSend) -> MediaReply | LocationReply:
    if body.kind == "location":
        if body.latitude is None or body.longitude is None:
            raise HTTPException(422, "a location needs latitude and longitude")
        place: LocationReply = {
            "kind": "location",
            "latitude": body.latitude,
            "longitude": body.longitude,
        }
        if body.name:
            place["name"] = body.name
        if body.address:
            place["address"] = body.address
        return place
    if body.link is None:
        raise HTTPException(422, f"an {body.kind} needs a link (or use /media/upload)")
    media: MediaReply = {"kind": body.kind, "link": body.link}
    if body.caption:
        media["caption"] = body.caption
    if body.filename is not None:
        media["filename"] = body.filename
    return media


def _check(reply: MediaReply | LocationReply) -> None:
    """Refused here, as Meta would refuse it, before anything is queued."""
    try:
        reply_payload("0", reply)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
